"""One package per feature, each owning its whole slice (commands, buttons, forms,
Actions, executors, tables, messages), registered explicitly by its `register()`.

Features never import each other: a capability one needs from another is a port in
`kernel.ports`, wired by `app.bootstrap`.
"""
