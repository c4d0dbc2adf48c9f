"""Deploy and rollback planning, proposing and executing, on small fakes of the Protocols.

`FakeCluster` keeps a Deployment's revisions the way the deployment controller does (a
new template is the next revision; undoing to an old one renumbers it as the newest)
and finishes a rollout after a few reads, or never for a failing image. `FakeGitOps`
keeps an Argo CD Application with history and refuses a rollback while auto-sync is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from features.kit.commands import Arguments
from features.kit.context import Context
from features.releases.actions import (
    Deploy,
    Rollback,
    image_change,
    split_image,
    with_version,
)
from features.releases.executors import DeployExecutor, RollbackExecutor, executors
from features.releases.history import History
from features.releases.planning import plan_deploy, plan_rollback, start_rollback
from features.releases.status import Status
from features.releases.targets import check_version
from kernel.actions import Action, Step, StepContext
from kernel.errors import AdapterError, StepFailed, UsageError
from kernel.ids import EnvironmentName, RunId, ServiceName, SlackUserId
from kernel.interactions import Reply
from kernel.ports.platform import AuditEntry
from kernel.ports.systems import (
    Adapters,
    Cluster,
    NamespaceSpec,
    NamespaceState,
    Revision,
    RolloutStatus,
)
from tests.unit.argo_fakes import FakeGitOps, argo_app
from tests.unit.fakes import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    FakeAuditLog,
    FakeChanges,
    FakeMessenger,
    FakeRuns,
    make_context,
)

IMAGE = "registry.example.com/payments/checkout"


# -- fakes of the Protocols --------------------------------------------------------------


@dataclass
class FakeDeployment:
    """One Deployment: its revisions (number -> images, change-cause) and its rollout."""

    name: str
    revisions: dict[int, tuple[tuple[str, ...], str | None]]
    current: int
    reads_to_finish: int = 2
    failing_images: set[str] = field(default_factory=set)
    reads: int = 100
    """Reads of its rollout status since the last change (the seeded one is long done)."""

    def images(self) -> tuple[str, ...]:
        return self.revisions[self.current][0]


class FakeCluster:
    """`Cluster` for deployments; records every call that changes something."""

    def __init__(self, *deployments: FakeDeployment, namespace: str = "checkout-prod") -> None:
        self.namespace = namespace
        self.items = {d.name: d for d in deployments}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.failing_reads = 0
        """The next this many rollout_status reads answer 503."""

    def _get(self, namespace: str, name: str) -> FakeDeployment:
        if namespace != self.namespace or name not in self.items:
            raise AdapterError("Kubernetes", f'deployments.apps "{name}" not found', status=404)
        return self.items[name]

    async def ensure_namespace(self, spec: NamespaceSpec) -> list[str]:
        raise NotImplementedError

    async def describe_namespace(self, name: str) -> NamespaceState | None:
        raise NotImplementedError

    async def delete_namespace(self, name: str) -> bool:
        raise NotImplementedError

    async def deployments(self, namespace: str, *, selector: str) -> list[RolloutStatus]:
        assert selector == "app.kubernetes.io/name=checkout"
        if namespace != self.namespace:
            return []
        return [self._status(d, advance=False) for d in self.items.values()]

    async def revisions(self, namespace: str, deployment: str) -> list[Revision]:
        found = self._get(namespace, deployment)
        return [
            Revision(n, images, datetime(2026, 11, 27, n, tzinfo=UTC), cause, f"{deployment}-{n}")
            for n, (images, cause) in sorted(found.revisions.items())
        ]

    async def set_image(
        self,
        namespace: str,
        deployment: str,
        *,
        image: str,
        change_cause: str,
        container: str | None = None,
    ) -> None:
        found = self._get(namespace, deployment)
        self.calls.append(("set_image", deployment, {"image": image, "cause": change_cause}))
        number = max(found.revisions) + 1
        found.revisions[number] = ((image,), change_cause)
        found.current, found.reads = number, 0

    async def rollback(
        self, namespace: str, deployment: str, *, to_revision: int, change_cause: str
    ) -> None:
        found = self._get(namespace, deployment)
        self.calls.append(("rollback", deployment, {"to": to_revision, "cause": change_cause}))
        if to_revision not in found.revisions:
            raise AdapterError("Kubernetes", f"revision {to_revision} not found", status=404)
        images, _ = found.revisions.pop(to_revision)
        number = max(found.revisions) + 1
        found.revisions[number] = (images, change_cause)
        found.current, found.reads = number, 0

    async def rollout_status(self, namespace: str, deployment: str) -> RolloutStatus:
        if self.failing_reads:
            self.failing_reads -= 1
            raise AdapterError("Kubernetes", "the API server answered 503", status=503)
        return self._status(self._get(namespace, deployment), advance=True)

    def _status(self, found: FakeDeployment, *, advance: bool) -> RolloutStatus:
        if advance:
            found.reads += 1
        failing = any(i.rsplit(":", 1)[-1] in found.failing_images for i in found.images())
        done = found.reads >= found.reads_to_finish and not failing
        return RolloutStatus(
            deployment=found.name,
            revision=found.current,
            images=found.images(),
            desired=2,
            updated=2 if done else 1,
            ready=2 if done else 1,
            available=2 if done else 1,
            complete=done,
            failed_reason=(
                "progress deadline exceeded: ReplicaSet has timed out progressing."
                if failing and found.reads >= found.reads_to_finish
                else None
            ),
        )


class FakeClusters:
    def __init__(self, clusters: dict[str, Cluster]) -> None:
        self.by_context = clusters

    def cluster(self, context: str) -> Cluster:
        if context not in self.by_context:
            raise AdapterError("Kubernetes", f"no context {context}; known: sandbox-prod")
        return self.by_context[context]

    def contexts(self) -> list[str]:
        return sorted(self.by_context)


class FakeGrafana:
    def dashboard(
        self,
        uid: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        variables: dict[str, str] | None = None,
    ) -> str:
        frm = f"&from={start:%H%M%S}" if start else ""
        return f"https://grafana.test/d/{uid}?var-env={(variables or {}).get('env')}{frm}"


def checkout_prod(*, revisions: int = 2, failing: set[str] | None = None) -> FakeDeployment:
    """checkout in prod: revisions 1.4.0, 1.4.1, 1.4.2…, the newest running."""
    versions = [f"1.4.{n}" for n in range(revisions)]
    history: dict[int, tuple[tuple[str, ...], str | None]] = {
        n + 1: ((f"{IMAGE}:{v}",), f"deploy {v} (seed)") for n, v in enumerate(versions)
    }
    return FakeDeployment("checkout", history, current=revisions, failing_images=failing or set())


@dataclass
class World:
    """A context on the sample catalog with fake adapters, and the fakes to inspect."""

    cluster: FakeCluster
    gitops: FakeGitOps
    changes: FakeChanges

    def context(self, user: str = ALICE, **kwargs: Any) -> Context:
        adapters = Adapters(
            kubernetes=FakeClusters({"sandbox-prod": self.cluster}),
            argocd=self.gitops,
            grafana=FakeGrafana(),
        )
        return make_context(user, adapters=adapters, changes=self.changes, **kwargs)


def world(
    *deployments: FakeDeployment,
    changes: FakeChanges | None = None,
    gitops: FakeGitOps | None = None,
) -> World:
    return World(
        FakeCluster(*(deployments or (checkout_prod(),))),
        gitops or FakeGitOps(argo_app()),
        changes or FakeChanges(FakeRuns()),
    )


async def refusal(coro: Any) -> str:
    with pytest.raises(UsageError) as caught:
        await coro
    return caught.value.message


async def run_steps(ctx: Context, action: Action) -> tuple[dict[str, Any], list[str]]:
    """Run the Action's steps in order, as the Run engine would; (outputs, reports)."""
    executor = next(e for e in executors(ctx.ports) if e.action_type is type(action))
    executor.poll_seconds = 0  # the fakes move on every read; no need to wait
    reports: list[str] = []

    async def report(detail: str) -> None:
        reports.append(detail)

    outputs: dict[str, dict[str, Any]] = {}
    steps: list[Step] = list(executor.steps(action))
    for step in steps:
        context = StepContext(
            run_id=RunId("run-7"),
            action=action,
            requested_by=ctx.user,
            outputs=outputs,
            attempt=1,
            report=report,
        )
        outputs[step.name] = await step.run(context) or {}
    return outputs, reports


# -- versions and images -----------------------------------------------------------------


@pytest.mark.parametrize(
    "version", ["1.4.2", "v2", "2026.11.27-rc_1", "latest", "sha256:" + "a" * 64, "A" * 128]
)
def test_a_tag_or_a_digest_is_a_version(version: str) -> None:
    assert check_version(version) == version


@pytest.mark.parametrize(
    "version",
    [
        "1.0; rm -rf",
        "../x",
        "a" * 300,
        "<!channel>",
        "-rc",
        ".hidden",
        "sha256:abc",
        "sha256:" + "A" * 64,
        "1.0 2",
        "",
        "1.0\n",
    ],
)
def test_anything_else_is_refused_with_what_to_type(version: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_version(version)

    message = caught.value.message
    assert "is not a version. Type an image tag such as `1.4.2`" in message
    assert "<!" not in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        (f"{IMAGE}:1.4.2", (IMAGE, ":1.4.2")),
        ("registry:5000/team/app", ("registry:5000/team/app", "")),
        ("registry:5000/team/app:2", ("registry:5000/team/app", ":2")),
        ("app@sha256:" + "b" * 64, ("app", "@sha256:" + "b" * 64)),
    ],
)
def test_an_image_splits_into_repository_and_tag_not_at_a_port(
    image: str, parts: tuple[str, str]
) -> None:
    assert split_image(image) == parts


def test_a_new_version_keeps_the_repository() -> None:
    assert with_version(f"{IMAGE}:1.4.2", "1.4.3") == f"{IMAGE}:1.4.3"
    assert with_version(f"{IMAGE}:1.4.2", "sha256:" + "c" * 64) == f"{IMAGE}@sha256:" + "c" * 64
    assert image_change(f"{IMAGE}:1.4.2", f"{IMAGE}:1.4.1") == f"{IMAGE}:1.4.2 -> :1.4.1"


# -- planning a deploy -------------------------------------------------------------------


async def test_a_deploy_holds_exactly_what_changes() -> None:
    w = world()

    action = await plan_deploy(w.context(), service="checkout", env="prod", version="1.4.3")

    assert action == Deploy(
        service="checkout",
        env="prod",
        version="1.4.3",
        image=f"{IMAGE}:1.4.3",
        from_image=f"{IMAGE}:1.4.1",
        from_revision=2,
        deployments=("checkout",),
    )
    assert action.lock_key() == "checkout/prod"
    assert action.change_lines() == [
        f"`checkout` in `prod`: {IMAGE}:1.4.1 -> :1.4.3 (revision 2 -> 3)"
    ]
    other = await plan_deploy(w.context(), service="checkout", env="prod", version="1.4.4")
    assert other.fingerprint() != action.fingerprint()


async def test_deploying_the_running_image_is_refused() -> None:
    message = await refusal(
        plan_deploy(world().context(), service="checkout", env="prod", version="1.4.1")
    )

    assert message == f"`checkout` in `prod` already runs `{IMAGE}:1.4.1`; nothing to deploy."


@pytest.mark.parametrize(
    ("service", "env", "expected"),
    [
        ("checkuot", "prod", "No service named 'checkuot'; did you mean 'checkout'?"),
        ("checkout", "prdo", "No environment named 'prdo'; did you mean 'prod'?"),
        ("search-api", "prod-eu", "`search-api` does not run in `prod-eu`; it runs in"),
    ],
)
async def test_unknown_names_are_refused_with_a_did_you_mean(
    service: str, env: str, expected: str
) -> None:
    ctx = world().context(user=DAVE)
    for plan in (
        plan_deploy(ctx, service=service, env=env, version="1.0"),
        plan_rollback(ctx, service=service, env=env),
    ):
        assert (await refusal(plan)).startswith(expected)


@pytest.mark.parametrize("user", [CAROL, ERIN, BOB])
async def test_only_the_owning_team_or_an_admin_may_deploy(user: str) -> None:
    w = world()

    message = await refusal(
        plan_deploy(w.context(user), service="checkout", env="prod", version="1.4.3")
    )

    assert message.startswith("Only the *payments* team, which owns `checkout`, or a platform")
    assert w.cluster.calls == []


async def test_a_platform_admin_may_deploy_any_service() -> None:
    action = await plan_deploy(world().context(DAVE), service="checkout", env="prod", version="2")

    assert action.image == f"{IMAGE}:2"


async def test_a_bad_version_is_refused_before_anything_is_read() -> None:
    w = world()
    w.cluster.namespace = "nowhere"  # reading would fail differently

    message = await refusal(
        plan_deploy(w.context(), service="checkout", env="prod", version="1.0; rm -rf")
    )

    assert message.startswith("`1.0; rm -rf` is not a version.")


async def test_without_kubernetes_configured_the_bot_says_so() -> None:
    ctx = make_context(ALICE, adapters=Adapters())

    message = await refusal(plan_deploy(ctx, service="checkout", env="prod", version="1.4.3"))

    assert message.startswith("Kubernetes is not configured on this bot (it needs KUBECONFIG")


async def test_a_missing_deployment_is_named_with_where_it_was_looked_for() -> None:
    w = world()
    w.cluster.namespace = "elsewhere"

    message = await refusal(plan_rollback(w.context(), service="checkout", env="prod"))

    assert message.startswith(
        "No Deployment labelled `app.kubernetes.io/name=checkout` in namespace "
        "`checkout-prod` (cluster `sandbox-prod`)"
    )


# -- planning a rollback -----------------------------------------------------------------


async def test_a_rollback_goes_to_the_previous_revision_by_default() -> None:
    action = await plan_rollback(
        world(checkout_prod(revisions=3)).context(), service="checkout", env="prod"
    )

    assert action == Rollback(
        service="checkout",
        env="prod",
        to_revision=2,
        from_revision=3,
        from_image=f"{IMAGE}:1.4.2",
        to_image=f"{IMAGE}:1.4.1",
        deployment="checkout",
    )
    assert action.change_lines() == [
        f"`checkout` in `prod`: {IMAGE}:1.4.2 -> :1.4.1 (revision 3 -> 2, which becomes revision 4)"
    ]


async def test_a_rollback_to_a_named_revision() -> None:
    ctx = world(checkout_prod(revisions=3)).context()

    action = await plan_rollback(ctx, service="checkout", env="prod", to_revision=1)

    assert (action.to_revision, action.to_image) == (1, f"{IMAGE}:1.4.0")


async def test_a_revision_that_does_not_exist_lists_the_known_ones() -> None:
    ctx = world(checkout_prod(revisions=3)).context()

    message = await refusal(plan_rollback(ctx, service="checkout", env="prod", to_revision=42))

    assert message == "`checkout` in `prod` has no revision 42; known: 1, 2, 3 (current)."


async def test_the_running_revision_is_not_a_rollback() -> None:
    ctx = world().context()

    message = await refusal(plan_rollback(ctx, service="checkout", env="prod", to_revision=2))

    assert message == "Revision 2 is the one `checkout` in `prod` runs now."


async def test_with_one_revision_there_is_nothing_to_roll_back_to() -> None:
    ctx = world(checkout_prod(revisions=1)).context()

    message = await refusal(plan_rollback(ctx, service="checkout", env="prod"))

    assert message.startswith("Nothing to roll back to: `checkout` in `prod` has only revision 1.")


# -- proposing ---------------------------------------------------------------------------


async def test_start_rollback_proposes_the_planned_action_announced_in_the_service_channel() -> (
    None
):
    w = world()

    reply = await start_rollback(w.context(), service="checkout", env="prod", reason="errors")

    [proposal] = w.changes.proposals
    assert proposal["action"] == await plan_rollback(w.context(), service="checkout", env="prod")
    assert proposal["announce_channel"] == "#payments"
    assert proposal["reason"] == "errors"
    assert proposal["idempotency_key"] == "trigger-1"
    assert reply.text.startswith("*Queued*: roll back checkout in prod to revision 1")


async def test_a_proposal_waiting_for_approval_says_so() -> None:
    changes = FakeChanges(FakeRuns())
    changes.waiting = True

    reply = await start_rollback(world(changes=changes).context(), service="checkout", env="prod")

    assert reply.text.startswith("*Waiting for approval* (rule `prod-changes`)")
    assert ":1.4.0 (revision 2 -> 1, which becomes revision 3)" in reply.text


async def test_a_refused_proposal_shows_why() -> None:
    changes = FakeChanges(FakeRuns())
    changes.refuse = "A rollback of `checkout/prod` is in progress, asked by <@U01ALICE>."

    reply = await start_rollback(world(changes=changes).context(), service="checkout", env="prod")

    assert reply.text == changes.refuse


async def test_start_rollback_answers_a_refusal_as_a_reply_never_raising() -> None:
    reply = await start_rollback(world().context(ERIN), service="checkout", env="prod")

    assert isinstance(reply, Reply)
    assert reply.text.startswith("Only the *payments* team")


def click(value: str, user: str = ALICE) -> Any:
    from kernel.ids import SlackTeamId, SlackUserId
    from kernel.interactions import Click

    return Click(
        user=SlackUserId(user),
        team=SlackTeamId("T0SANDBOX"),
        action_id="x",
        value=value,
        channel=None,
        message_ts=None,
        response_url=None,
        trigger_id=None,
    )


# -- executing on Kubernetes -------------------------------------------------------------


async def test_a_deploy_sets_the_image_with_a_change_cause_and_watches_it_through() -> None:
    w = world()
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod", version="1.4.3")

    outputs, reports = await run_steps(ctx, action)

    assert w.cluster.calls == [
        (
            "set_image",
            "checkout",
            {"image": f"{IMAGE}:1.4.3", "cause": "deploy 1.4.3 by U01ALICE (run run-7)"},
        )
    ]
    assert reports == ["1/2 updated, 1 ready, 1 available"]
    assert outputs["watch"] == {"revisions": {"checkout": 3}}
    assert outputs["done"]["grafana"].startswith("https://grafana.test/d/checkout-overview")
    messenger = ctx.ports.messenger
    assert isinstance(messenger, FakeMessenger)
    [(channel, text)] = messenger.posts
    assert channel == "#payments"
    assert text.startswith("Deployed `checkout` `1.4.3` to `prod` (Run `run-7`).")
    assert "&amp;from=" in text  # the link's `&` is escaped like all mrkdwn


async def test_a_deploy_run_again_after_a_crash_sets_nothing_twice() -> None:
    w = world()
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod", version="1.4.3")
    await run_steps(ctx, action)

    await run_steps(ctx, action)

    assert [c[0] for c in w.cluster.calls] == ["set_image"]


async def test_a_rollback_undoes_to_the_revision_with_a_change_cause() -> None:
    deployment = checkout_prod(revisions=3)
    w = world(deployment)
    ctx = w.context()
    action = await plan_rollback(ctx, service="checkout", env="prod", to_revision=1)

    outputs, _ = await run_steps(ctx, action)

    assert w.cluster.calls == [
        (
            "rollback",
            "checkout",
            {"to": 1, "cause": "rollback to revision 1 by U01ALICE (run run-7)"},
        )
    ]
    assert deployment.current == 4 and deployment.images() == (f"{IMAGE}:1.4.0",)
    assert sorted(deployment.revisions) == [2, 3, 4]  # renumbered, as rollout undo does
    assert outputs["watch"] == {"revisions": {"checkout": 4}}


async def test_a_failing_image_fails_the_watch_with_the_reason() -> None:
    w = world(checkout_prod(failing={"9.9.9"}))
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod", version="9.9.9")

    with pytest.raises(StepFailed) as caught:
        await run_steps(ctx, action)

    assert str(caught.value) == (
        "checkout: progress deadline exceeded: ReplicaSet has timed out progressing."
    )


async def test_a_rollout_that_never_finishes_times_out() -> None:
    w = world(FakeDeployment("checkout", checkout_prod().revisions, 2, reads_to_finish=10**6))
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod", version="1.4.3")
    executor = next(e for e in executors(ctx.ports) if e.action_type is Deploy)
    executor.poll_seconds, executor.timeout_seconds = 0, 0
    context = StepContext(RunId("r"), action, ALICE, {}, 1)

    await executor.steps(action)[0].run(context)
    with pytest.raises(StepFailed, match="did not finish within 0 s"):
        await executor.steps(action)[1].run(context)


async def test_an_approval_is_stale_once_the_environment_moved() -> None:
    w = world()
    ctx = w.context()
    planned = await plan_rollback(ctx, service="checkout", env="prod")
    rollback_executor = RollbackExecutor(ctx.ports)
    assert await rollback_executor.stale_reason(planned) is None

    await run_steps(ctx, await plan_deploy(ctx, service="checkout", env="prod", version="1.5.0"))

    assert await rollback_executor.stale_reason(planned) == (
        f"now revision 3 (image {IMAGE}:1.5.0)"
    )
    with pytest.raises(StepFailed, match="prod moved since this was planned"):
        await run_steps(ctx, planned)


# -- status ------------------------------------------------------------------------------


async def test_status_shows_each_environment_and_a_failure_inline() -> None:
    w = world()
    ctx = w.context()

    reply = await Status().run(ctx, Arguments(["checkout"], usage=""))

    lines = reply.text.splitlines()
    assert lines[0] == "*Status of `checkout`* (owned by *payments*)"
    assert lines[1].startswith("• *staging*: :warning: Kubernetes")  # no such context here
    assert lines[2].startswith(f"• *prod*: `{IMAGE}:1.4.1` · 2/2 ready · revision 2")
    assert "Grafana>" in lines[2]
    assert lines[3].startswith(f"• *prod-eu*: `{IMAGE}:1.4.2` · Synced, Healthy")
    assert lines[-1] == "Alerts: Alertmanager is not configured on this bot."


class FakeAlerts:
    """`AlertSilences` answering a fixed list of alerts for the filters it is given."""

    def __init__(self, alerts: list[dict[str, Any]]) -> None:
        self.alerts_list = alerts
        self.filters: list[list[str]] = []

    async def create_silence(self, **kwargs: Any) -> str:
        raise NotImplementedError

    async def expire_silence(self, silence_id: str) -> bool:
        raise NotImplementedError

    async def alerts(self, *, filters: list[str], active: bool = True) -> list[dict[str, Any]]:
        self.filters.append(filters)
        return self.alerts_list


async def test_status_lists_firing_alerts_escaped_and_the_last_deploy() -> None:
    alerts = FakeAlerts(
        [
            {
                "labels": {"alertname": "HighErrorRate", "severity": "critical", "env": "prod"},
                "startsAt": "2026-11-27T04:10:00Z",
            },
            {"labels": {"alertname": "<!channel>", "env": "<@U123>"}},
        ]
    )
    audit = FakeAuditLog(
        [
            AuditEntry(
                at=datetime(2026, 11, 27, 4, 0, tzinfo=UTC),
                actor=SlackUserId(ALICE),
                event="run.succeeded",
                service=ServiceName("checkout"),
                environment=EnvironmentName("prod"),
                detail={"action": "deploy checkout 1.4.1 to prod"},
            )
        ]
    )
    w = world()
    ctx = make_context(
        ALICE,
        adapters=Adapters(
            kubernetes=FakeClusters({"sandbox-prod": w.cluster}), alertmanager=alerts
        ),
        audit=audit,
    )

    reply = await Status().run(ctx, Arguments(["checkout"], usage=""))

    assert alerts.filters == [['service="checkout"']]
    assert "    last: deploy checkout 1.4.1 to prod by <@U01ALICE>, 2026-11-27 04:00 UTC" in (
        reply.text
    )
    assert (
        "*Firing alerts* (2):\n• `HighErrorRate` (critical, prod) since 2026-11-27 04:10 UTC"
        in (reply.text)
    )
    assert "• `&lt;!channel&gt;` (&lt;@U123&gt;)" in reply.text
    assert "Argo CD is not configured" in reply.text  # prod-eu, inline


async def test_history_names_who_asked_and_who_approved() -> None:
    deployment = checkout_prod(revisions=2)
    deployment.revisions[3] = ((f"{IMAGE}:1.4.0",), "rollback to revision 1 by U01ALICE (run r9)")
    deployment.current = 3
    audit = FakeAuditLog(
        [
            AuditEntry(
                at=datetime(2026, 11, 27, 4, 0, tzinfo=UTC),
                actor=SlackUserId(BOB),
                event="run.approved",
                service=ServiceName("checkout"),
                run_id=RunId("r9"),
            )
        ]
    )
    w = world(deployment)
    ctx = make_context(
        CAROL, adapters=Adapters(kubernetes=FakeClusters({"sandbox-prod": w.cluster})), audit=audit
    )

    reply = await History().run(ctx, Arguments(["checkout", "prod"], usage=""))

    lines = reply.text.splitlines()
    assert lines[0] == (
        "*History of `checkout` in `prod`* (Deployment `checkout`, newest first; 3 revisions)"
    )
    assert lines[1] == (
        f"*3* :arrow_left: *running* `{IMAGE}:1.4.0` · 2026-11-27 03:00 UTC · rollback to "
        "revision 1 by <@U01ALICE>, approved by <@U02BOB>"
    )
    assert lines[2] == f"*2* `{IMAGE}:1.4.1` · 2026-11-27 02:00 UTC · deploy 1.4.1 (seed)"


@pytest.mark.parametrize(("failing", "survives"), [(2, True), (3, False)])
async def test_the_watch_rides_out_a_blip_but_not_a_failing_api(
    failing: int, survives: bool
) -> None:
    w = world()
    ctx = w.context()
    action = await plan_deploy(ctx, service="checkout", env="prod", version="1.4.3")
    executor = DeployExecutor(ctx.ports, poll_seconds=0)
    context = StepContext(RunId("r"), action, ALICE, {}, 1)
    await executor.steps(action)[0].run(context)
    w.cluster.failing_reads = failing

    watching = executor.steps(action)[1].run(context)

    if survives:
        assert await watching == {"revisions": {"checkout": 3}}
    else:
        with pytest.raises(StepFailed, match=r"^Kubernetes: the API server answered 503$"):
            await watching


# -- the verification hook ---------------------------------------------------------------


class RecordingVerifier:
    def __init__(self, *, fail: bool = False) -> None:
        self.heard: list[Any] = []
        self.fail = fail

    async def rollout_finished(self, rollout: Any) -> str | None:
        self.heard.append(rollout)
        if self.fail:
            raise RuntimeError("database away")
        return "verifying for 10 min"


@pytest.mark.parametrize("fail", [False, True])
async def test_a_finished_rollout_is_told_to_the_verifier_and_never_fails_the_deploy(
    fail: bool,
) -> None:
    ctx = world().context()
    action = await plan_deploy(ctx, service="checkout", env="prod", version="1.4.3")
    verifier = RecordingVerifier(fail=fail)
    executor = next(e for e in executors(ctx.ports, verifier) if e.action_type is Deploy)
    executor.poll_seconds = 0  # type: ignore[attr-defined]
    outputs: dict[str, dict[str, Any]] = {}
    for step in executor.steps(action):
        outputs[step.name] = (
            await step.run(StepContext(RunId("r1"), action, ALICE, outputs, 1)) or {}
        )

    (rollout,) = verifier.heard
    assert (rollout.run_id, rollout.kind, rollout.service, rollout.env, rollout.version) == (
        "r1",
        "deploy",
        "checkout",
        "prod",
        "1.4.3",
    )
    assert rollout.started_at <= rollout.finished_at
    expected = "not verified (RuntimeError)" if fail else "verifying for 10 min"
    assert outputs["done"]["verification"] == expected
