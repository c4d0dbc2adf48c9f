"""Identifiers that get mixed up, as distinct types (a ServiceName is not a TeamName)."""

from __future__ import annotations

from typing import NewType

ServiceName = NewType("ServiceName", str)


TeamName = NewType("TeamName", str)


EnvironmentName = NewType("EnvironmentName", str)


SlackUserId = NewType("SlackUserId", str)


SlackChannelId = NewType("SlackChannelId", str)


SlackTeamId = NewType("SlackTeamId", str)


RunId = NewType("RunId", str)
