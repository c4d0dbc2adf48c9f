"""The application: settings, the one place that wires everything (bootstrap), the HTTP
server, the Slack app and its middleware, and the CLI."""
