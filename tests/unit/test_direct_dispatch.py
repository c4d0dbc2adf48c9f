"""app.slack.direct: the answer leaves when the handler acks, not when Bolt polls, and
only the requests Bolt's listeners would hand to the same handlers take this way."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from app.slack.direct import DirectDispatch
from app.slack.front_door import SlackFrontDoor
from engine.metrics import Metrics

TEAM = "T0OURS"


class FakeDoor:
    """The handlers of SlackFrontDoor, recording calls; each acks, then waits for `go`."""

    def __init__(self) -> None:
        self.team_id = TEAM
        self.metrics = Metrics()
        self.calls: list[str] = []
        self.go = asyncio.Event()
        self.finished: list[str] = []

    async def on_platform(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        self.calls.append(f"command:{body['text']}")
        assert respond.response_url == body.get("response_url")
        await ack(response_type="ephemeral", text=f"ok {body['text']}")
        await self.go.wait()  # the work after the ack
        self.finished.append("command")

    async def on_button(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        self.calls.append(f"button:{body['actions'][0]['action_id']}")
        await ack()
        await self.go.wait()
        self.finished.append("button")

    async def on_form(self, ack: Any, body: dict[str, Any]) -> None:
        self.calls.append(f"form:{body['view']['callback_id']}")
        await ack(response_action="errors", errors={"b": "no"})

    async def on_options(self, ack: Any, body: dict[str, Any]) -> None:
        self.calls.append(f"options:{body['action_id']}")
        await ack(options=[])


def dispatcher() -> tuple[DirectDispatch, FakeDoor]:
    door = FakeDoor()
    return DirectDispatch(cast(SlackFrontDoor, door)), door


def command(text: str, name: str = "/platform") -> dict[str, Any]:
    return {"command": name, "text": text, "team_id": TEAM, "user_id": "U1", "channel_id": "C1"}


def click(action_id: str = "approve", team: str | None = TEAM) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U1"},
        "actions": [{"action_id": action_id, "value": "v"}],
        "response_url": "http://slack/response",
    }
    if team is not None:
        body["team"] = {"id": team}
    return body


async def test_the_answer_leaves_at_the_ack_while_the_work_goes_on() -> None:
    direct, door = dispatcher()
    answer = await asyncio.wait_for(direct.dispatch(command("help")), 1.0)
    assert answer is not None and answer.status == 200
    assert json.loads(answer.body) == {"text": "ok help", "response_type": "ephemeral"}
    assert door.finished == [] and direct.running == 1  # still working after its ack
    door.go.set()
    await direct.drain(1.0)
    assert door.finished == ["command"] and direct.running == 0


async def test_clicks_forms_and_options_reach_their_handlers() -> None:
    direct, door = dispatcher()
    door.go.set()
    assert (await direct.dispatch(click("approve"))) is not None
    form = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": "U1"},
        "view": {"id": "V1", "callback_id": "new_service"},
    }
    answer = await direct.dispatch(form)
    assert answer is not None
    assert json.loads(answer.body) == {"response_action": "errors", "errors": {"b": "no"}}
    options = {"type": "block_suggestion", "team": {"id": TEAM}, "action_id": "svc", "value": ""}
    answer = await direct.dispatch(options)
    assert answer is not None and json.loads(answer.body) == {"options": []}
    await direct.drain(1.0)
    assert door.calls == ["button:approve", "form:new_service", "options:svc"]


async def test_what_bolt_listeners_would_not_take_is_left_to_bolt() -> None:
    direct, door = dispatcher()
    no_action = click()
    no_action["actions"] = []
    for body in (
        command("help", name="/other"),
        {"type": "event_callback", "team_id": TEAM, "event": {"type": "app_mention"}},
        {"type": "url_verification", "challenge": "x"},
        {"type": "view_closed", "team": {"id": TEAM}, "user": {"id": "U1"}, "view": {}},
        {"type": "view_submission", "team": {"id": TEAM}, "user": {"id": "U1"}, "view": {}},
        {"type": "shortcut", "team": {"id": TEAM}, "user": {"id": "U1"}},
        no_action,
    ):
        assert await direct.dispatch(body) is None, body
    assert door.calls == []


async def test_clicks_from_another_workspace_do_nothing() -> None:
    direct, door = dispatcher()
    foreign = await direct.dispatch(click(team="T0THEIRS"))
    assert foreign is not None and (foreign.status, foreign.body) == (200, "")
    nameless = await direct.dispatch(click(team=None))
    assert nameless is not None and nameless.status == 400
    assert door.calls == []


async def test_a_handler_that_fails_before_its_ack_fails_the_request() -> None:
    direct, door = dispatcher()

    async def broken(ack: Any, body: dict[str, Any], respond: Any) -> None:
        raise KeyError("user_id")

    door.on_platform = broken  # type: ignore[method-assign]
    try:
        await direct.dispatch(command("help"))
    except KeyError:
        pass
    else:
        raise AssertionError("the failure before the ack was swallowed")


async def test_a_handler_that_never_acks_gets_404_as_in_bolt() -> None:
    direct, door = dispatcher()

    async def silent(ack: Any, body: dict[str, Any], respond: Any) -> None:
        return None

    door.on_platform = silent  # type: ignore[method-assign]
    answer = await direct.dispatch(command("help"))
    assert answer is not None and answer.status == 404
