"""One module per external system: the real implementation of a port on its SDK.

The ports (Protocols and the values they return) live in `kernel.ports`; a module here
is imported only by `app.bootstrap`, and only when its system is configured, so a bot
without GitLab never loads python-gitlab. This is the only room that imports the
infrastructure SDKs (kubernetes, hvac, python-gitlab, prometheus-api-client).
"""
