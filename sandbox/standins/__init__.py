"""Local stand-ins for the services the bot talks to (Slack, GitLab, Kubernetes, Argo CD),
and launchers for the real OpenBao, Prometheus and Alertmanager.

They speak the real services' wire protocols over HTTP, so the bot's real clients talk to
them unchanged. Nothing here imports the bot: a stand-in that knew the bot could only
confirm the bot's own assumptions.
"""
