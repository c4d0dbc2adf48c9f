"""Releases on Argo CD, on `FakeGitOps` (tests/unit/argo_fakes.py), which keeps git's
HEAD in `sync_revision` while history says what runs, as Argo CD does.

Also the approval-time stale check of both backends: what it says, and that it never
lets an approval through when the live state cannot be read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

import pytest

from features.kit.commands import Arguments
from features.kit.context import Context
from features.releases.actions import (
    AUTO_SYNC_BACK_ON,
    AUTO_SYNC_OFF_AND_ROLL_BACK,
    Deploy,
    Rollback,
    SetAutoSync,
)
from features.releases.buttons import RollBackWithoutAutoSync, TurnAutoSyncBackOn
from features.releases.executors import executors
from features.releases.history import History
from features.releases.planning import plan_deploy, plan_rollback, start_rollback
from features.releases.status import Status
from features.releases.targets import AutoSyncOn
from kernel.actions import Action, Step, StepContext
from kernel.errors import AdapterError, StepFailed, UsageError
from kernel.ids import RunId, SlackUserId
from kernel.ports.systems import GitOpsHistoryEntry
from tests.unit.argo_fakes import HEAD, IMAGE, NEXT, OLD, POLICY, FakeGitOps, argo_app
from tests.unit.fakes import ALICE, CAROL, ERIN, FakeChanges, FakeMessenger
from tests.unit.test_releases import World, click, refusal, world

RUN = "run-7"
"""The id `run` gives every Run."""


def argo_world(
    *,
    automated: dict[str, bool] | None = None,
    owner: str | None = None,
    changes: FakeChanges | None = None,
) -> World:
    return world(gitops=FakeGitOps(argo_app(automated=automated, owner=owner)), changes=changes)


def rolled_back(w: World) -> World:
    """Someone rolled back to 1.4.1 in Argo CD: history id 3 runs OLD; git still says HEAD."""
    app = w.gitops.app
    entry = GitOpsHistoryEntry(3, OLD, None, (f"{IMAGE}:1.4.1",))
    w.gitops.app = replace(
        app,
        running_revision=OLD,
        sync_status="OutOfSync",
        images=(f"{IMAGE}:1.4.1",),
        history=(*app.history, entry),
        operation_phase="Succeeded",
        operation_revision=OLD,
        result_revision=OLD,
    )
    return w


class RecordingMessenger(FakeMessenger):
    """Also keeps each post's blocks and key."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    async def post(
        self, channel: str, *, text: str, blocks: Any = (), key: Any = None, thread_key: Any = None
    ) -> None:
        await super().post(channel, text=text)
        self.sent.append({"to": channel, "text": text, "blocks": list(blocks), "key": key})

    async def update(self, key: str, *, text: str, blocks: Any = ()) -> None:
        await super().update(key, text=text)
        self.sent.append({"update": key, "text": text, "blocks": list(blocks)})


def recording(ctx: Context) -> tuple[Context, RecordingMessenger]:
    messenger = RecordingMessenger()
    ports = dataclasses.replace(ctx.ports, messenger=messenger)
    return dataclasses.replace(ctx, ports=ports), messenger


async def run(ctx: Context, action: Action) -> dict[str, dict[str, Any]]:
    """The Action's steps in order, as the Run engine runs them (as Run `run-7`)."""
    executor = next(e for e in executors(ctx.ports) if e.action_type is type(action))
    executor.poll_seconds, executor.timeout_seconds = 0, 5  # the fake moves on every read
    outputs: dict[str, dict[str, Any]] = {}
    steps: list[Step] = list(executor.steps(action))
    for step in steps:
        context = StepContext(RunId(RUN), action, SlackUserId(ctx.user), outputs, 1)
        outputs[step.name] = await step.run(context) or {}
    return outputs


async def stale(ctx: Context, action: Action) -> str | None:
    executor = next(e for e in executors(ctx.ports) if e.action_type is type(action))
    check = executor.stale_reason  # type: ignore[attr-defined]
    reason: str | None = await check(action)
    return reason


# -- what runs is history, not sync.revision -------------------------------------------


async def test_a_rollback_is_planned_from_what_runs_not_from_gits_head() -> None:
    w = rolled_back(argo_world())

    action = await plan_rollback(w.context(), service="checkout", env="prod-eu")

    assert action == Rollback(
        service="checkout",
        env="prod-eu",
        backend="argocd",
        to_revision=2,
        from_revision=3,
        from_image=f"{IMAGE}:1.4.1",
        to_image=f"{IMAGE}:1.4.2",
        from_git_revision=OLD,
        to_git_revision=HEAD,
    )
    assert action.change_lines()[0].startswith(
        "`checkout` in `prod-eu`: git `a1b2c3d` -> `e4f5a6b` (Argo CD history 3 -> 2)"
    )


async def test_the_default_rollback_goes_to_the_previous_revision() -> None:
    action = await plan_rollback(argo_world().context(), service="checkout", env="prod-eu")

    assert (action.to_revision, action.from_revision) == (1, 2)
    assert (action.from_git_revision, action.to_git_revision) == (HEAD, OLD)
    assert action.summary() == "roll back checkout in prod-eu to history id 1 (git a1b2c3d)"


async def test_history_marks_the_newest_entry_as_running_and_says_what_git_says() -> None:
    w = rolled_back(argo_world())

    reply = await History().run(w.context(), Arguments(["checkout", "prod-eu"], usage=""))

    lines = reply.text.splitlines()
    assert lines[0] == (
        "*History of `checkout` in `prod-eu`* (Argo CD `checkout-prod-eu`, newest first; "
        "auto-sync off; git `HEAD` is `e4f5a6b`, OutOfSync)"
    )
    assert lines[1].startswith(f"*3* :arrow_left: *running* git `a1b2c3d` `{IMAGE}:1.4.1`")
    assert ":arrow_left:" not in "".join(lines[2:])


async def test_status_says_what_runs_and_what_git_says() -> None:
    w = rolled_back(argo_world())

    reply = await Status().run(w.context(), Arguments(["checkout"], usage=""))

    [line] = [x for x in reply.text.splitlines() if x.startswith("• *prod-eu*")]
    assert "OutOfSync, Healthy · running git `a1b2c3d`, git `HEAD` is `e4f5a6b`" in line


# -- deploying: short SHAs and tags in, full SHAs compared -----------------------------


@pytest.mark.parametrize("typed", [HEAD, HEAD[:7], HEAD[:10].upper()])
async def test_deploying_what_runs_is_refused_however_the_sha_is_typed(typed: str) -> None:
    w = argo_world()

    message = await refusal(
        plan_deploy(w.context(), service="checkout", env="prod-eu", version=typed)
    )

    assert message == "`checkout` in `prod-eu` already runs git revision `e4f5a6b`."


async def test_deploying_gits_head_after_a_rollback_is_a_change() -> None:
    w = rolled_back(argo_world())

    action = await plan_deploy(w.context(), service="checkout", env="prod-eu", version=HEAD[:7])

    assert (action.git_revision, action.from_git_revision, action.from_revision) == (
        HEAD[:7],
        OLD,
        3,
    )


async def test_a_deploy_of_a_tag_watches_for_the_full_sha_argo_resolved() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod-eu", version="v1.4.3")
    assert action.change_lines() == [
        "`checkout` in `prod-eu`: git revision `e4f5a6b` -> `v1.4.3` (Argo CD)"
    ]

    outputs = await run(ctx, action)

    assert w.gitops.calls == [("sync", "v1.4.3")]
    assert outputs["change"]["revision"] == NEXT
    assert outputs["watch"] == {"revision": NEXT}
    assert w.gitops.app.sync_revision == HEAD  # git's HEAD did not move


async def test_a_deploy_of_an_abbreviated_sha_waits_for_the_full_one() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod-eu", version=OLD[:9])

    outputs = await run(ctx, action)

    assert outputs["watch"] == {"revision": OLD}


async def test_a_deploy_run_again_after_a_crash_syncs_nothing_twice() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod-eu", version=OLD[:7])
    await run(ctx, action)

    await run(ctx, action)

    assert w.gitops.calls == [("sync", OLD[:7])]


# -- rolling back: the watch follows the operation, not sync.revision ------------------


async def test_a_rollback_finishes_while_sync_revision_stays_at_head() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu")

    outputs = await run(ctx, action)

    assert w.gitops.calls == [("rollback", 1)]
    assert outputs["watch"] == {"revision": OLD}
    assert (w.gitops.app.running_revision, w.gitops.app.sync_revision) == (OLD, HEAD)


async def test_the_watch_is_not_fooled_by_the_last_operation_seen_before_ours() -> None:
    w = argo_world()
    w.gitops.app = replace(
        w.gitops.app,
        operation_phase="Failed",
        operation_message="an earlier sync failed",
        operation_revision=NEXT,
        result_revision=NEXT,
    )
    w.gitops.stale_reads = 2
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu")

    outputs = await run(ctx, action)

    assert outputs["watch"] == {"revision": OLD}


async def test_a_failed_operation_fails_the_run_with_argos_message() -> None:
    w = argo_world()
    w.gitops.failing.add(OLD)
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu")

    with pytest.raises(StepFailed) as caught:
        await run(ctx, action)

    assert str(caught.value) == (
        "Argo CD: Failed: one or more synchronization tasks completed unsuccessfully"
    )


async def test_a_rollback_run_again_after_a_crash_rolls_back_once() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu")
    await run(ctx, action)

    await run(ctx, action)

    assert w.gitops.calls == [("rollback", 1)]


async def test_a_rollback_after_the_environment_moved_fails_the_step() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu")
    entry = GitOpsHistoryEntry(3, NEXT, None, ())
    history = (*w.gitops.app.history, entry)
    w.gitops.app = replace(w.gitops.app, running_revision=NEXT, history=history)

    with pytest.raises(StepFailed, match="moved since this was planned: now git revision f00ba12"):
        await run(ctx, action)

    assert w.gitops.calls == []


async def test_automated_sync_turned_on_since_planning_fails_the_step() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu")
    w.gitops.app = replace(w.gitops.app, automated={})

    with pytest.raises(StepFailed, match="automated sync was turned on since"):
        await run(ctx, action)


# -- automated sync off, and back on exactly as it was ---------------------------------


async def test_with_auto_sync_on_nothing_runs_and_the_offer_keeps_the_reason() -> None:
    w = argo_world(automated=POLICY)

    reply = await start_rollback(
        w.context(), service="checkout", env="prod-eu", reason="errors since 1.4.2"
    )

    assert "Automated sync is on for `checkout-prod-eu`" in reply.text
    assert "Nothing was changed" in reply.text
    assert w.changes.proposals == [] and w.gitops.calls == []
    [button] = reply.blocks[-1]["elements"]
    assert button["action_id"] == AUTO_SYNC_OFF_AND_ROLL_BACK
    assert button["text"]["text"] == "Turn off auto-sync and roll back"

    clicked = await RollBackWithoutAutoSync().click(w.context(), click(button["value"]))

    assert clicked is not None and clicked.text.startswith("*Queued*")
    [proposal] = w.changes.proposals
    assert proposal["reason"] == "errors since 1.4.2"
    action = proposal["action"]
    assert (action.disable_auto_sync, action.auto_sync_policy, action.to_revision) == (
        True,
        POLICY,
        1,
    )
    assert action.change_lines()[1] == (
        'Automated sync (`automated: {"prune": true, "selfHeal": true}`) is turned *off* '
        "first; a button turns it back on exactly as it was."
    )


async def test_a_rollback_with_auto_sync_on_proposed_directly_raises_auto_sync_on() -> None:
    w = argo_world(automated=POLICY)

    with pytest.raises(AutoSyncOn) as caught:
        await plan_rollback(w.context(), service="checkout", env="prod-eu")

    assert caught.value.to_revision == 1


async def test_auto_sync_off_keeps_the_policy_and_back_on_restores_it_exactly() -> None:
    w = argo_world(automated=POLICY)
    ctx, messenger = recording(w.context())
    action = await plan_rollback(ctx, service="checkout", env="prod-eu", disable_auto_sync=True)

    outputs = await run(ctx, action)

    assert w.gitops.calls == [("disable_auto_sync", None), ("rollback", 1)]
    assert outputs["auto-sync-off"] == {
        "previous": POLICY,
        "turned_off": True,
        "how": "enabled: false",
    }
    assert w.gitops.app.automated == {**POLICY, "enabled": False}
    offer = messenger.sent[-1]
    assert offer["key"] == f"run:{RUN}:auto-sync"
    assert offer["text"].startswith(
        "Automated sync of `checkout` in `prod-eu` is *off* since this rollback"
    )
    [button] = offer["blocks"][-1]["elements"]
    assert (button["action_id"], button["value"]) == (AUTO_SYNC_BACK_ON, f"checkout prod-eu {RUN}")

    ctx.ports.run_control.runs[RUN] = (ALICE, action, "succeeded")  # type: ignore[attr-defined]
    clicked = await TurnAutoSyncBackOn().click(ctx, click(button["value"]))

    assert clicked is not None and clicked.text.startswith("*Queued*")
    back_on = w.changes.proposals[-1]["action"]
    assert back_on == SetAutoSync(
        service="checkout",
        env="prod-eu",
        enabled=True,
        policy=POLICY,
        offer_run=RUN,
        target_revision="HEAD",
        git_revision=HEAD,
        running_git_revision=OLD,
    )
    assert back_on.change_lines() == [
        '`checkout` in `prod-eu`: Argo CD auto-sync on, as `automated: {"prune": true, '
        '"selfHeal": true}`',
        ":warning: Argo CD then deploys git `e4f5a6b` (what `HEAD` is now) in place of "
        "`a1b2c3d`, which runs now.",
    ]

    await run(ctx, back_on)

    assert w.gitops.calls[-1] == ("set_automated", POLICY)
    assert w.gitops.app.automated == POLICY
    answered = messenger.sent[-1]
    assert answered["update"] == f"run:{RUN}:auto-sync"
    assert "Turned back on by <@U01ALICE> at " in answered["text"]
    assert all(block["type"] != "actions" for block in answered["blocks"])


async def test_the_auto_sync_off_step_refuses_a_policy_changed_since_planning() -> None:
    w = argo_world(automated=POLICY)
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu", disable_auto_sync=True)
    w.gitops.app = replace(w.gitops.app, automated={"prune": False})

    with pytest.raises(StepFailed, match="changed since this was planned"):
        await run(ctx, action)

    assert w.gitops.calls == []


async def test_the_back_on_button_wants_a_rollback_that_turned_auto_sync_off() -> None:
    w = argo_world()
    ctx = w.context()
    deploy = Deploy(service="checkout", env="prod-eu", version="1", from_image="x", from_revision=1)
    ctx.ports.run_control.runs["run-1"] = (ALICE, deploy, "succeeded")  # type: ignore[attr-defined]

    for value in ("checkout prod-eu run-1", "checkout prod-eu no-such-run"):
        clicked = await TurnAutoSyncBackOn().click(ctx, click(value))
        assert clicked is not None
        assert clicked.text.startswith("This button does not name a rollback")
    assert w.changes.proposals == []


async def test_an_older_back_on_button_turns_on_what_argo_still_has() -> None:
    w = argo_world(automated={"prune": True, "enabled": False})

    await TurnAutoSyncBackOn().click(w.context(), click("checkout prod-eu"))

    assert w.changes.proposals[-1]["action"].policy == {"prune": True}


async def test_turning_on_what_is_on_is_refused() -> None:
    w = argo_world(automated=POLICY)

    clicked = await TurnAutoSyncBackOn().click(w.context(), click("checkout prod-eu"))

    assert clicked is not None and clicked.text.startswith(
        "Automated sync of `checkout-prod-eu` is on already"
    )


async def test_the_auto_sync_button_checks_the_clickers_rights() -> None:
    w = argo_world(automated=POLICY)

    clicked = await RollBackWithoutAutoSync().click(w.context(CAROL), click("checkout prod-eu 1"))
    assert clicked is not None and clicked.text.startswith("Only the *payments* team")
    clicked = await TurnAutoSyncBackOn().click(w.context(CAROL), click("checkout prod-eu"))
    assert clicked is not None and clicked.text.startswith("Only the *payments* team")
    assert w.changes.proposals == []


@pytest.mark.parametrize("value", ["", "checkout", "checkout prod-eu x", "a b c d"])
async def test_a_forged_button_value_does_nothing(value: str) -> None:
    w = argo_world(automated=POLICY)

    clicked = await RollBackWithoutAutoSync().click(w.context(), click(value))

    assert clicked is not None
    assert "nothing was done" in clicked.text or "No service named" in clicked.text
    assert w.changes.proposals == []


# -- ApplicationSets -------------------------------------------------------------------


async def test_an_application_set_app_is_refused_with_the_application_sets_name() -> None:
    w = argo_world(automated=POLICY, owner="checkout-envs")

    reply = await start_rollback(w.context(), service="checkout", env="prod-eu")

    assert reply.text.startswith(
        "`checkout-prod-eu` is generated by the ApplicationSet `checkout-envs`, whose "
        "controller owns its spec"
    )
    assert "revert the change in git" in reply.text
    assert not reply.blocks  # no button to turn auto-sync off
    assert w.gitops.calls == [] and w.changes.proposals == []
    message = await refusal(
        plan_rollback(w.context(), service="checkout", env="prod-eu", disable_auto_sync=True)
    )
    assert "ApplicationSet `checkout-envs`" in message


async def test_an_application_set_app_without_auto_sync_rolls_back_as_usual() -> None:
    w = argo_world(owner="checkout-envs")

    action = await plan_rollback(w.context(), service="checkout", env="prod-eu")

    assert (action.to_revision, action.disable_auto_sync) == (1, False)


async def test_an_application_set_adopting_the_app_after_planning_fails_the_step() -> None:
    w = argo_world(automated=POLICY)
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu", disable_auto_sync=True)
    w.gitops.app = replace(w.gitops.app, owner_application_set="checkout-envs")

    assert await stale(ctx, action) == (
        "checkout-prod-eu is generated by the ApplicationSet checkout-envs"
    )
    with pytest.raises(StepFailed, match="ApplicationSet checkout-envs; nothing was changed"):
        await run(ctx, action)
    assert w.gitops.calls == []


# -- approvals: stale checks on both backends, failing closed --------------------------


async def test_an_argocd_deploy_approval_is_checked_against_what_runs() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod-eu", version="v1.4.3")
    assert await stale(ctx, action) is None

    rolled_back(w)

    assert await stale(ctx, action) == f"now git revision a1b2c3d (images {IMAGE}:1.4.1)"


async def test_an_argocd_approval_is_stale_once_automated_sync_is_on() -> None:
    w = argo_world()
    ctx = w.context()
    deploy = await plan_deploy(ctx, service="checkout", env="prod-eu", version="v1.4.3")
    rollback = await plan_rollback(ctx, service="checkout", env="prod-eu")
    w.gitops.app = replace(w.gitops.app, automated={})

    assert await stale(ctx, deploy) == "automated sync was turned on"
    assert await stale(ctx, rollback) == "automated sync was turned on"


async def test_a_rollback_that_turns_auto_sync_off_is_stale_when_the_policy_changed() -> None:
    w = argo_world(automated=POLICY)
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu", disable_auto_sync=True)
    assert await stale(ctx, action) is None

    w.gitops.app = replace(w.gitops.app, automated={"prune": False})

    assert (
        await stale(ctx, action) == "its automated sync policy changed (now automated: prune=false)"
    )


async def test_turning_auto_sync_back_on_is_stale_once_git_moved() -> None:
    w = rolled_back(argo_world())
    ctx = w.context()
    w.gitops.app = replace(w.gitops.app, automated={**POLICY, "enabled": False})
    await TurnAutoSyncBackOn().click(ctx, click("checkout prod-eu"))
    action = w.changes.proposals[-1]["action"]
    assert await stale(ctx, action) is None

    w.gitops.app = replace(w.gitops.app, sync_revision=NEXT)

    assert await stale(ctx, action) == "git HEAD is now f00ba12 and a1b2c3d runs"


async def test_the_argocd_stale_check_fails_closed_when_argo_cd_cannot_be_read() -> None:
    w = argo_world()
    ctx = w.context()
    deploy = await plan_deploy(ctx, service="checkout", env="prod-eu", version="v1.4.3")
    rollback = await plan_rollback(ctx, service="checkout", env="prod-eu")
    w.gitops.down = True

    for action in (deploy, rollback):
        with pytest.raises(AdapterError, match="cannot reach"):
            await stale(ctx, action)


async def test_the_kubernetes_stale_check_fails_closed_when_the_cluster_cannot_be_read() -> None:
    w = world()
    ctx = w.context()
    deploy = await plan_deploy(ctx, service="checkout", env="prod", version="1.4.3")
    rollback = await plan_rollback(ctx, service="checkout", env="prod")

    for action in (deploy, rollback):
        w.cluster.failing_reads = 1
        with pytest.raises(AdapterError, match="503"):
            await stale(ctx, action)
    assert await stale(ctx, rollback) is None

    w.cluster.items.clear()
    assert await stale(ctx, rollback) == "the Deployment checkout is gone"


async def test_without_argo_cd_configured_the_stale_check_does_not_pass() -> None:
    w = argo_world()
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod-eu")
    bare = dataclasses.replace(
        ctx.ports, adapters=dataclasses.replace(ctx.ports.adapters, argocd=None)
    )

    with pytest.raises(AdapterError, match="Argo CD is not configured"):
        await stale(dataclasses.replace(ctx, ports=bare), action)


# -- words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "words"),
    [("rollback", "may roll it back. Ask in"), ("deploy", "may deploy it. Ask in")],
)
async def test_the_rights_refusal_puts_it_where_english_does(command: str, words: str) -> None:
    ctx = argo_world().context(ERIN)

    if command == "rollback":
        reply = await start_rollback(ctx, service="checkout", env="prod-eu")
        text = reply.text
    else:
        with pytest.raises(UsageError) as caught:
            await plan_deploy(ctx, service="checkout", env="prod-eu", version="v1.4.3")
        text = caught.value.message
    assert words in text
    assert "roll back it" not in text


async def test_the_argocd_refusals_say_what_to_do() -> None:
    w = argo_world(automated=POLICY)
    message = await refusal(
        plan_deploy(w.context(), service="checkout", env="prod-eu", version="v1.4.3")
    )
    assert message.startswith("Automated sync is on for `checkout-prod-eu`: Argo CD deploys")

    only = world(gitops=FakeGitOps(replace(argo_app(), history=argo_app().history[1:])))
    message = await refusal(plan_rollback(only.context(), service="checkout", env="prod-eu"))
    assert message.startswith("Nothing to roll back to")
    message = await refusal(
        plan_rollback(argo_world().context(), service="checkout", env="prod-eu", to_revision=2)
    )
    assert message == "`checkout-prod-eu` has no other history id 2; known: 1, 2 (current)."
