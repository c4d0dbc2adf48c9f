"""Slack wiring: the Bolt app (`bolt`), its middleware, and the handlers (`front_door`)."""

from app.slack.bolt import build_bolt_app
from app.slack.front_door import SlackFrontDoor, usage_message

__all__ = ["SlackFrontDoor", "build_bolt_app", "usage_message"]
