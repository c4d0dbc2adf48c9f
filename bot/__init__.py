"""platform-bot's runtime: settings, Slack wiring, HTTP server, database, Run engine, CLI.

Importing this package does nothing: everything is built by `bot.bootstrap.build_app`.
Feature packages (commands/, approvals/, alerts/, catalog/) may import only
`bot.domain`, the types they share with the runtime.
"""
