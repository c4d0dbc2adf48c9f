"""Bolt middleware, one small class per concern, each switched on in `app.slack.bolt`."""
