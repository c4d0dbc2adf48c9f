"""`/platform new-service` on in-memory fakes: parsing, validation, the modal, the steps.

The fakes of GitLab, Kubernetes and Vault below are small honest versions of the
Protocols in kernel.ports.systems: they keep what exists and count what they were asked to
change, so a test can tell "created" from "found".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import features.new_service.request as new_service_module
from catalog import Catalog
from features.kit.commands import Arguments
from features.kit.context import Context, Ports
from features.new_service.cleanup import CleanUpButton, CleanUpExecutor
from features.new_service.command import NewServiceCommand
from features.new_service.modal import NewServiceForm, TeamOptions, TemplateChosen, TemplateOptions
from features.new_service.provisioning import NewServiceExecutor
from features.new_service.request import CleanUpService, NewService, name_problem
from features.releases.status import Status
from kernel.actions import Action, Step, StepContext
from kernel.errors import AdapterError, StepFailed, UsageError
from kernel.ids import RunId, SlackChannelId, SlackTeamId
from kernel.interactions import Click, OpenModal, OptionsRequest, Submission
from kernel.ports.systems import (
    Adapters,
    CiVariable,
    NamespaceSpec,
    NamespaceState,
    Pipeline,
    Project,
    ProjectRemoval,
    ServiceSecrets,
)
from tests.unit.fakes import (
    ALICE,
    BOB,
    DAVE,
    ERIN,
    FakeChanges,
    FakeMessenger,
    FakeModals,
    FakeRuns,
    FakeServiceRegistry,
    make_context,
    sample_catalog,
)

TODAY = date(2025, 6, 3)

TEMPLATE_YML = """\
name: tiny-api
title: Tiny API
description: A test template
parameters:
  - name: port
    type: integer
    default: 8080
    min: 1024
    max: 65535
  - name: runtime
    title: Runtime
    type: enum
    enum: ["20", "22"]
    default: "22"
"""


# -- fakes of the adapter Protocols ---------------------------------------------------------


class FakeCodeHost:
    """`CodeHost` in dicts: projects by path, their files, variables, protected branches."""

    def __init__(self, existing: tuple[str, ...] = ()) -> None:
        self.projects: dict[str, Project] = {}
        self.files: dict[int, dict[str, str]] = {}
        self.commits: dict[int, int] = {}
        self.variables: dict[int, dict[tuple[str, str], str]] = {}
        self.protected: dict[int, set[str]] = {}
        self.fail_commit: str | None = None
        self.marked: dict[str, Project] = {}
        self.keep_marked = False
        self.answer_after = 0.0
        """Seconds find_project takes (a slow GitLab)."""
        for path in existing:
            group, name = path.rsplit("/", 1)
            self._create(group, name)

    def _create(self, group: str, name: str) -> Project:
        project = Project(
            id=len(self.projects) + 1,
            path_with_namespace=f"{group}/{name}",
            web_url=f"https://gitlab.example.com/{group}/{name}",
            default_branch="main",
        )
        self.projects[project.path_with_namespace] = project
        self.files[project.id], self.commits[project.id] = {}, 0
        self.variables[project.id], self.protected[project.id] = {}, set()
        return project

    async def find_project(self, path_with_namespace: str) -> Project | None:
        await asyncio.sleep(self.answer_after)
        return self.projects.get(path_with_namespace)

    async def ensure_project(self, *, group: str, name: str, description: str) -> Project:
        return self.projects.get(f"{group}/{name}") or self._create(group, name)

    async def commit_files(
        self, project_id: int, *, branch: str, message: str, files: dict[str, str]
    ) -> str | None:
        if self.fail_commit is not None:
            raise AdapterError("GitLab", self.fail_commit, status=500)
        if all(self.files[project_id].get(p) == c for p, c in files.items()):
            return None
        self.files[project_id].update(files)
        self.commits[project_id] += 1
        return f"commit-{self.commits[project_id]}"

    async def ensure_variables(self, project_id: int, variables: list[CiVariable]) -> int:
        changed = 0
        for v in variables:
            if self.variables[project_id].get((v.key, v.environment_scope)) != v.value:
                self.variables[project_id][(v.key, v.environment_scope)] = v.value
                changed += 1
        return changed

    async def protect_branch(self, project_id: int, branch: str) -> bool:
        new = branch not in self.protected[project_id]
        self.protected[project_id].add(branch)
        return new

    async def pipelines(self, project_id: int, *, ref: str | None = None) -> list[Pipeline]:
        return []

    async def delete_project(
        self, path_with_namespace: str, *, project_id: int | None = None
    ) -> ProjectRemoval:
        """As GitLab where deletion is delayed: marked (renamed) first, then removed for
        good, unless `keep_marked` (GitLab.com), when it stays marked."""
        project = self.projects.pop(path_with_namespace, None) or next(
            (p for p in self.marked.values() if p.id == project_id), None
        )
        if project is None:
            return ProjectRemoval("absent", path_with_namespace)
        renamed = f"{path_with_namespace}-deletion_scheduled-{project.id}"
        if self.keep_marked:
            self.marked[renamed] = replace(project, marked_for_deletion_on=TODAY)
            return ProjectRemoval("scheduled", renamed, marked_on=TODAY, reason="not permitted")
        self.marked.pop(renamed, None)
        return ProjectRemoval("removed", path_with_namespace, marked_on=TODAY)


@dataclass
class FakeCluster:
    namespaces: dict[str, NamespaceSpec] = field(default_factory=dict)
    created: int = 0
    linger: int = 2
    """How many looks a deleted namespace stays Terminating for, as Kubernetes keeps it."""
    terminating: dict[str, int] = field(default_factory=dict)

    async def ensure_namespace(self, spec: NamespaceSpec) -> list[str]:
        if spec.name in self.terminating:
            raise AdapterError("Kubernetes", f"namespace {spec.name} is still being deleted")
        if spec.name in self.namespaces:
            return []
        self.namespaces[spec.name] = spec
        self.created += 1
        return [f"Namespace/{spec.name}", f"ServiceAccount/{spec.service_account}"]

    async def describe_namespace(self, name: str) -> NamespaceState | None:
        spec = self.namespaces.get(name)
        if spec is None:
            return None
        labels = {"team": spec.team, "platform.example.com/service": spec.service}
        if name not in self.terminating:
            return NamespaceState(name, labels, {})
        self.terminating[name] -= 1
        if self.terminating[name] < 0:
            del self.terminating[name], self.namespaces[name]
            return None
        return NamespaceState(
            name,
            labels,
            {},
            phase="Terminating",
            deleting_since=datetime(2025, 6, 3, 12, 1, tzinfo=UTC),
            waiting_for="Some resources are remaining: configmaps. has 1 resource instances",
        )

    async def delete_namespace(self, name: str) -> bool:
        if name not in self.namespaces:
            return False
        self.terminating.setdefault(name, self.linger)
        return True


class FakeClusters:
    def __init__(self, contexts: list[str]) -> None:
        self.by_context = {c: FakeCluster() for c in contexts}

    def cluster(self, context: str) -> FakeCluster:
        if context not in self.by_context:
            raise AdapterError("Kubernetes", f"no context {context}")
        return self.by_context[context]

    def contexts(self) -> list[str]:
        return list(self.by_context)


class FakeVault:
    """`SecretStore` as three sets: KV paths, policies (with their paths), roles."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.policies: dict[str, list[str]] = {}
        self.roles: dict[str, tuple[str, str]] = {}
        self.writes = 0

    async def ensure_kv_path(self, team: str, service: str, env: str) -> str:
        path = f"{team}/{service}/{env}"
        if path not in self.paths:
            self.paths.add(path)
            self.writes += 1
        return path

    async def ensure_policy(
        self, name: str, paths: list[str], *, read_paths: list[str] | None = None
    ) -> bool:
        wanted = [*paths, *(read_paths or [])]
        if self.policies.get(name) == wanted:
            return False
        self.policies[name] = wanted
        self.writes += 1
        return True

    async def ensure_kubernetes_auth(
        self, host: str, *, ca_cert: str | None = None, disable_local_ca_jwt: bool = False
    ) -> bool:
        return False

    async def ensure_kubernetes_role(
        self,
        name: str,
        *,
        service_account: str,
        namespace: str,
        policies: list[str],
        ttl: str = "1h",
    ) -> bool:
        if self.roles.get(name) == (service_account, namespace):
            return False
        self.roles[name] = (service_account, namespace)
        self.writes += 1
        return True

    async def describe(
        self, team: str, service: str, env: str, *, policy: str, role: str
    ) -> ServiceSecrets:
        path = f"{team}/{service}/{env}"
        return ServiceSecrets(path, path in self.paths, policy in self.policies, role in self.roles)

    async def delete_service(
        self, team: str, service: str, env: str, *, policy: str, role: str
    ) -> None:
        self.paths.discard(f"{team}/{service}/{env}")
        self.policies.pop(policy, None)
        self.roles.pop(role, None)


class RunsWithActions:
    """`RunControl` that also reads a Run's Action, over a FakeRuns."""

    def __init__(self, runs: FakeRuns) -> None:
        self.runs = runs
        self.closed: set[RunId] = set()
        self.outputs_of: dict[str, dict[str, dict[str, Any]]] = {}

    async def outputs(self, run_id: RunId) -> dict[str, dict[str, Any]]:
        return self.outputs_of.get(run_id, {})

    def _find(self, run_id: RunId) -> Any:
        return next((s for r, s in self.runs.runs.values() if r == run_id), None)

    async def retry(self, run_id: RunId, *, by: Any) -> bool:
        return False

    async def requested_by(self, run_id: RunId) -> Any:
        found = self._find(run_id)
        return None if found is None else found.requested_by

    async def action(self, run_id: RunId) -> Action | None:
        found = self._find(run_id)
        return None if found is None else found.action

    async def close(self, run_id: RunId, *, by: Any, reason: str) -> bool:
        """Every Run these fakes know is a failed one; closing it works once."""
        if self._find(run_id) is None or run_id in self.closed:
            return False
        self.closed.add(run_id)
        return True


# -- a world of fakes ------------------------------------------------------------------------


@dataclass
class World:
    catalog: Catalog
    gitlab: FakeCodeHost
    clusters: FakeClusters
    vault: FakeVault
    runs: FakeRuns
    changes: FakeChanges
    messenger: FakeMessenger
    modals: FakeModals
    registry: FakeServiceRegistry
    control: RunsWithActions | None = None

    def __post_init__(self) -> None:
        self.control = RunsWithActions(self.runs)

    def context(self, user: str = ALICE, *, request_key: str = "trigger-1") -> Context:
        base = make_context(user, self.catalog, request_key=request_key)
        return Context(
            user=base.user,
            channel=SlackChannelId("C01PAYMENTS"),
            team=base.team,
            request_key=request_key,
            ports=self.ports(base.ports),
        )

    def ports(self, base: Ports) -> Ports:
        return replace(
            base,
            catalog=self.catalog,
            runs=self.runs,
            run_control=self.control,
            messenger=self.messenger,
            modals=self.modals,
            adapters=Adapters(gitlab=self.gitlab, kubernetes=self.clusters, vault=self.vault),
            changes=self.changes,
            services=self.registry,
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    folder = tmp_path / "templates" / "tiny-api"
    (folder / "skeleton").mkdir(parents=True)
    (folder / "template.yml").write_text(TEMPLATE_YML)
    (folder / "skeleton" / "README.md").write_text(
        "# {{ service }}\n\n{{ description }}\n\nport {{ port }}, node {{ runtime }}\n"
    )
    (folder / "skeleton" / "deploy").mkdir()
    (folder / "skeleton" / "deploy" / "{{ service }}.yml").write_text(
        "team: {{ team }}\nenvironments: {{ environments | join(',') }}\n"
    )
    model = sample_catalog().model.model_copy(
        update={"templates_dir": str(tmp_path / "templates")}, deep=True
    )
    catalog = Catalog(model)
    runs = FakeRuns()
    contexts = sorted({e.cluster for e in model.environments.values()})
    return World(
        catalog=catalog,
        gitlab=FakeCodeHost(existing=("payments/ghost",)),
        clusters=FakeClusters(contexts),
        vault=FakeVault(),
        runs=runs,
        changes=FakeChanges(runs),
        messenger=FakeMessenger(),
        modals=FakeModals(),
        registry=FakeServiceRegistry(catalog),
    )


async def typed(world: World, text: str, *, user: str = ALICE) -> str:
    """What the person sees for `/platform new-service <text>`."""
    command = NewServiceCommand()
    args = Arguments(text.split(), usage=command.full_usage())
    try:
        reply = await command.run(world.context(user), args)
    except UsageError as exc:
        return exc.message
    return reply.text


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Invoices", "Use lowercase letters: `invoices`."),
        ("a" * 64, "Use at most 40 characters (this one has 64)."),
        ("../x", "Start with a letter, end with a letter or digit"),
        ("façade", "Use only the letters a-z, digits and `-` (no accents or other scripts)."),
        ("rechnung-ü", "no accents or other scripts"),
        ("-api", "Start with a letter"),
        ("api-", "Start with a letter"),
        ("for", "`for` is a reserved word; pick another name."),
        ("namespace", "`namespace` is a reserved word"),
        ("kube-system", "`kube-system` is a reserved word"),
        ("", "Type a name for the service"),
    ],
)
def test_a_bad_name_says_what_to_type_instead(name: str, says: str) -> None:
    problem = name_problem(name)
    assert problem is not None and says in problem


def test_good_names_pass() -> None:
    assert name_problem("invoice-api") is None
    assert name_problem("a" * 40) is None
    assert name_problem("tiny-api", templates=["tiny-api"]) == (
        "`tiny-api` is a reserved word; pick another name."
    )


async def test_typed_names_are_checked_with_everything_else(world: World) -> None:
    said = await typed(world, "tiny-api Invoices --team payments")
    assert "Nothing was created" in said and "Use lowercase letters: `invoices`." in said
    said = await typed(world, "tiny-api tiny-api --team payments")
    assert "`tiny-api` is a reserved word" in said  # the template's own name
    said = await typed(world, "tiny-api " + "x" * 64 + " --team payments")
    assert "at most 40 characters (this one has 64)" in said
    said = await typed(world, "tiny-api ../x --team payments")
    assert "Start with a letter" in said
    assert world.changes.proposals == []


async def test_a_name_in_gitlab_but_not_in_the_catalog_is_refused(world: World) -> None:
    said = await typed(world, "tiny-api ghost --team payments")
    assert "GitLab already has a project `payments/ghost`; pick another name." in said
    # the same name in another team's group is free
    said = await typed(world, "tiny-api ghost --team search", user=DAVE)
    assert said.startswith("Creating `ghost`")


async def test_a_slow_gitlab_gets_an_answer_in_time_not_a_missed_deadline(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(new_service_module, "FREE_CHECK_SECONDS", 0.05)
    world.gitlab.answer_after = 5.0

    said = await typed(world, "tiny-api ledger --team payments")

    assert "did not say within 0.05 s whether `ledger` is free" in said
    assert "Submit again in a moment." in said
    assert world.changes.proposals == []


async def test_a_name_in_the_catalog_is_refused(world: World) -> None:
    said = await typed(world, "tiny-api checkout --team payments")
    assert "`checkout` is already in the catalog (owned by `payments`)." in said


async def test_a_name_still_held_says_by_what_and_when_it_frees_up(world: World) -> None:
    await world.registry.record_removal(
        "ledger",
        {"owner": "payments", "environments": ["staging"], "repository": "payments/ledger"},
        remains=["Vault paths, policies and roles payments-ledger-* (staging)"],
        by=ALICE,
    )
    said = await typed(world, "tiny-api ledger --team payments")
    assert (
        "`ledger` is still being cleaned up; the name frees up once all of it is gone. "
        "`/platform status ledger` shows what is left." in said
    )

    world.gitlab.projects["payments/orders"] = Project(
        7, "payments/orders", "https://gitlab.example.com/payments/orders", "main", TODAY
    )  # marked for deletion where GitLab does not rename what it marks: the name is held
    said = await typed(world, "tiny-api orders --team payments")
    assert (
        "GitLab marked `payments/orders` for deletion on 2025-06-03 and holds the name until it "
        "removes it (30 days later by default); pick another name or wait." in said
    )

    cluster = world.clusters.by_context["sandbox-prod"]
    cluster.namespaces["refunds2-prod"] = NamespaceSpec(
        "refunds2-prod", "payments", "refunds2", "prod", "payments", "refunds2"
    )
    await cluster.delete_namespace("refunds2-prod")
    said = await typed(world, "tiny-api refunds2 --team payments")
    assert (
        "The namespace `refunds2-prod` in prod is still being deleted (Terminating since 12:01 "
        "UTC); the name frees up once Kubernetes has removed it, usually within minutes. It "
        "waits for: Some resources are remaining: configmaps. has 1 resource instances." in said
    )


async def test_status_of_a_service_being_cleaned_up_says_what_is_left(world: World) -> None:
    await world.registry.record_removal(
        "ledger",
        {"owner": "payments", "environments": ["staging"], "repository": "payments/ledger"},
        remains=["Vault paths, policies and roles payments-ledger-* (staging)", "a <b> & c"],
        by=ALICE,
    )
    reply = await Status().run(world.context(BOB), Arguments(["ledger"], usage=""))
    assert reply.text == (
        "*Status of `ledger`* (owned by *payments*)\n"
        f":broom: Being removed: Clean up was asked by <@{ALICE}>. Still there:\n"
        "• Vault paths, policies and roles payments-ledger-* (staging)\n"
        "• a &lt;b&gt; &amp; c\n"
        "It stays in the catalog, and its name taken, until all of it is gone; the Clean up's "
        "progress message has Retry for what failed."
    )


# -- teams and rights ------------------------------------------------------------------------


async def test_an_unknown_team_gets_a_did_you_mean(world: World) -> None:
    said = await typed(world, "tiny-api invoices --team paymnts")
    assert "No team named 'paymnts'; did you mean 'payments'?" in said


async def test_only_members_and_admins_create_for_a_team(world: World) -> None:
    said = await typed(world, "tiny-api invoices --team payments", user=ERIN)
    assert "You are not in team `payments`" in said
    said = await typed(world, "tiny-api invoices --team payments", user=BOB)  # sre, not payments
    assert "You are not in team `payments`" in said
    said = await typed(world, "tiny-api invoices --team payments", user=DAVE)  # admin
    assert said.startswith("Creating `invoices`")


async def test_a_missing_team_says_how_to_name_it(world: World) -> None:
    assert (await typed(world, "tiny-api invoices")).startswith("Say which team owns it")


# -- parameters ------------------------------------------------------------------------------


async def test_parameters_are_typed_and_defaults_applied(world: World) -> None:
    said = await typed(world, "tiny-api invoices --team payments --param port=9000")
    assert said.startswith("Creating `invoices`")
    action = world.changes.proposals[0]["action"]
    assert isinstance(action, NewService)
    assert action.parameters == {"port": 9000, "runtime": "22"}
    assert action.repository == "payments/invoices"
    assert action.environments == ("staging", "prod", "prod-eu")
    assert world.changes.proposals[0]["idempotency_key"] == "new-service:trigger-1"
    assert world.changes.proposals[0]["reply_channel"] == "C01PAYMENTS"


async def test_bad_parameters_say_what_is_accepted(world: World) -> None:
    said = await typed(world, "tiny-api invoices --team payments --param port=80 --param rt=20")
    assert "port must be at least 1024" in said
    assert "rt is not a parameter of tiny-api" in said
    said = await typed(world, "tiny-api invoices --team payments --param port")
    assert "`port` is not `key=value`" in said


async def test_an_unknown_template_lists_the_known_ones(world: World) -> None:
    said = await typed(world, "rust-api invoices --team payments")
    assert "There is no template `rust-api`; use one of `tiny-api`." in said


# -- the modal -------------------------------------------------------------------------------


async def test_no_arguments_open_the_modal(world: World) -> None:
    said = await typed(world, "")
    assert said.startswith("Fill in the form")
    (view,) = world.modals.opened
    ids = [b["block_id"] for b in view["blocks"]]
    assert ids == [  # the only template is chosen already, so its fields show
        "template",
        "name",
        "team",
        "description",
        "environments",  # every one of the catalog's, ticked at first
        "param.tiny-api.port",
        "param.tiny-api.runtime",
    ]
    template = view["blocks"][0]
    assert template["dispatch_action"] is True
    assert template["element"]["type"] == "external_select"
    assert template["element"]["initial_option"]["value"] == "tiny-api"
    team = view["blocks"][2]["element"]
    assert team["type"] == "external_select" and "options" not in team
    assert team["min_query_length"] == 0  # the list shows as soon as it opens
    assert team["initial_option"]["value"] == "payments"  # alice's team first
    assert view["blocks"][6]["element"]["initial_option"]["value"] == "22"
    assert view["private_metadata"] == '{"channel": "C01PAYMENTS"}'


def add_template(world: World, name: str, *, parameters: str = "") -> None:
    folder = Path(world.catalog.model.templates_dir or "") / name
    (folder / "skeleton").mkdir(parents=True)
    (folder / "template.yml").write_text(
        f"name: {name}\ntitle: {name.title()}\ndescription: d\nparameters:{parameters or ' []'}\n"
    )
    (folder / "skeleton" / "README.md").write_text("# {{ service }}\n")


async def test_with_several_templates_the_modal_shows_fields_once_one_is_chosen(
    world: World,
) -> None:
    add_template(world, "worker", parameters="\n  - name: queue\n    type: string\n")
    await typed(world, "")
    (view,) = world.modals.opened
    ids = [b["block_id"] for b in view["blocks"]]
    assert ids[:4] == ["template", "name", "team", "description"]
    assert ids[4:] == ["environments", "choose_template"]  # a line saying what comes
    assert "initial_option" not in view["blocks"][0]["element"]

    opened = OpenModal(
        id="V1",
        hash="1712.abc",
        private_metadata=view["private_metadata"],
        values={"template": "worker", "name": "jobs", "team": "search", "description": "d"},
    )
    await TemplateChosen().click(
        world.context(), modal_click("new_service.template", "worker", opened)
    )
    assert world.modals.updates == [("V1", "1712.abc")]  # a stale view is refused by hash
    updated = world.modals.opened[-1]
    ids = [b["block_id"] for b in updated["blocks"]]
    assert [i for i in ids if i.startswith("param.")] == ["param.worker.queue"]
    by_id = {b["block_id"]: b for b in updated["blocks"]}
    assert by_id["name"]["element"]["initial_value"] == "jobs"  # what was typed stays
    assert by_id["team"]["element"]["initial_option"]["value"] == "search"
    assert by_id["template"]["element"]["initial_option"]["value"] == "worker"
    assert updated["private_metadata"] == view["private_metadata"]


def modal_click(action_id: str, value: str, modal: OpenModal | None = None) -> Click:
    return Click(
        user=ALICE,
        team=SlackTeamId("T0SANDBOX"),
        action_id=action_id,
        value=value,
        channel=None,
        message_ts=None,
        response_url=None,
        trigger_id=None,
        modal=modal,
    )


async def test_the_team_menu_serves_at_most_100_matching_teams(world: World) -> None:
    teams = {f"team-{i:03}": world.catalog.model.teams["payments"] for i in range(500)}
    model = world.catalog.model.model_copy(update={"teams": {**world.catalog.model.teams, **teams}})
    world.catalog = Catalog(model)
    ctx = world.context()

    def request(query: str) -> OptionsRequest:
        return OptionsRequest(ALICE, SlackTeamId("T0"), "new_service.team", query)

    shown = await TeamOptions().options(ctx, request(""))
    assert len(shown) == 100
    assert [o["value"] for o in await TeamOptions().options(ctx, request("PAY"))] == ["payments"]
    narrowed = [o["value"] for o in await TeamOptions().options(ctx, request("team-49"))]
    assert narrowed == [f"team-49{i}" for i in range(10)]
    shown = await TemplateOptions().options(ctx, request("tiny"))
    assert [(o["text"]["text"], o["value"]) for o in shown] == [("Tiny API", "tiny-api")]


def submission(values: dict[str, Any], *, user: str = ALICE) -> Submission:
    return Submission(
        user=ALICE if user == ALICE else user,  # type: ignore[arg-type]
        team=SlackTeamId("T0SANDBOX"),
        callback_id="newservice",
        view_id="V123",
        private_metadata='{"channel": "C01PAYMENTS"}',
        values=values,
        trigger_id=None,
    )


async def test_the_form_answers_errors_by_block(world: World) -> None:
    errors = await NewServiceForm().submit(
        world.context(),
        submission(
            {
                "template": "tiny-api",
                "name": "Bad Name",
                "team": "sre",
                "description": None,
                "param.tiny-api.port": "eighty",
            }
        ),
    )
    assert errors == {
        "name": "Use lowercase letters: 'bad-name'.",
        "team": "You are not in team 'sre'. Ask someone in it (or a platform admin) to create "
        "the service, or choose your own team.",
        "param.tiny-api.port": "port must be a whole number, like 8080",
    }
    assert world.changes.proposals == []


async def test_a_good_form_proposes_once_per_view(world: World) -> None:
    values = {"template": "tiny-api", "name": "invoices", "team": "payments", "description": "x"}
    assert await NewServiceForm().submit(world.context(), submission(values)) is None
    assert await NewServiceForm().submit(world.context(), submission(values)) is None
    assert len(world.runs.runs) == 1  # Slack's retry of the same view is the same Run
    proposal = world.changes.proposals[0]
    assert proposal["idempotency_key"] == "new-service:view:V123"
    assert proposal["reply_channel"] == "C01PAYMENTS"


# -- the steps -------------------------------------------------------------------------------


def new_service(**changes: Any) -> NewService:
    fields: dict[str, Any] = {
        "service": "invoices",
        "template": "tiny-api",
        "team": "payments",
        "description": "Invoices for <!channel>",
        "parameters": {"port": 8080, "runtime": "22"},
        "environments": ("staging", "prod"),
        "repository": "payments/invoices",
    }
    return NewService(**{**fields, **changes})


async def run_steps(steps: Any, action: Action, outputs: dict[str, Any] | None = None) -> Any:
    outputs = {} if outputs is None else outputs
    reports: list[str] = []

    async def report(detail: str) -> None:
        reports.append(detail)

    for step in steps:
        assert isinstance(step, Step)
        if step.name in outputs:
            continue
        context = StepContext(RunId("run-1"), action, ALICE, outputs, 1, report)
        outputs[step.name] = await step.run(context) or {}
    return outputs, reports


async def test_every_step_runs_and_a_second_run_changes_nothing(world: World) -> None:
    executor = NewServiceExecutor(world.ports(world.context().ports))
    action = new_service()
    outputs, reports = await run_steps(executor.steps(action), action)
    project = world.gitlab.projects["payments/invoices"]
    files = world.gitlab.files[project.id]
    assert sorted(files) == ["README.md", "deploy/invoices.yml"]
    assert "Invoices for <!channel>" in files["README.md"]  # rendered as data, escaped in Slack
    assert files["deploy/invoices.yml"] == "team: payments\nenvironments: staging,prod\n"
    assert world.gitlab.variables[project.id][("KUBE_NAMESPACE", "prod")] == "invoices-prod"
    assert world.gitlab.protected[project.id] == {"main"}
    staging = world.clusters.by_context["sandbox-staging"].namespaces["invoices-staging"]
    assert (staging.team, staging.rbac_group, staging.service_account) == (
        "payments",
        "payments",
        "invoices",
    )
    assert world.vault.policies["payments-invoices-prod"] == ["payments/invoices/prod"]
    assert world.vault.roles["payments-invoices-prod"] == ("invoices", "invoices-prod")
    assert world.catalog.service("invoices").repository == "payments/invoices"
    ((channel, text),) = world.messenger.posts
    assert channel == "#payments" and "payments/invoices" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert outputs["vault"]["paths"] == {
        "staging": "payments/invoices/staging",
        "prod": "payments/invoices/prod",
    }
    assert "committing 2 files to payments/invoices" in reports

    writes, created = world.vault.writes, world.clusters.by_context["sandbox-prod"].created
    await run_steps(executor.steps(action), action)  # as after a crash before checkpoints
    assert world.gitlab.commits[project.id] == 1
    assert world.vault.writes == writes
    assert world.clusters.by_context["sandbox-prod"].created == created


async def test_a_gitlab_failure_fails_the_step_with_its_message(world: World) -> None:
    world.gitlab.fail_commit = "500 Internal Server Error"
    executor = NewServiceExecutor(world.ports(world.context().ports))
    with pytest.raises(StepFailed, match="500 Internal Server Error"):
        await run_steps(executor.steps(new_service()), new_service())


async def test_a_missing_adapter_says_which_setting_configures_it(world: World) -> None:
    ports = world.ports(world.context().ports)
    bare = replace(ports, adapters=Adapters())
    with pytest.raises(
        AdapterError, match=r"GitLab is not configured on this bot \(it needs GITLAB_URL"
    ):
        await run_steps(NewServiceExecutor(bare).steps(new_service()), new_service())


def clean_up_of(action: NewService, project_id: int | None = None) -> CleanUpService:
    return CleanUpService(
        service=action.service,
        team=action.team,
        environments=action.environments,
        repository=action.repository,
        project_id=project_id,
    )


async def run_all(
    steps: Any, action: Action, outputs: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """As the Run engine does: every step not done, going on after a `keep_going` one
    fails; what the steps returned, and why each failed one failed."""
    outputs = {} if outputs is None else outputs
    failed: dict[str, str] = {}
    for step in steps:
        if step.name in outputs:
            continue
        context = StepContext(RunId("run-1"), action, ALICE, outputs, 1)
        try:
            outputs[step.name] = await step.run(context) or {}
        except (StepFailed, AdapterError) as exc:
            failed[step.name] = str(exc)
            if not step.keep_going:
                break
    return outputs, failed


def quick(executor: CleanUpExecutor) -> CleanUpExecutor:
    executor.poll_every = 0.0
    return executor


async def test_clean_up_removes_everything_and_tolerates_what_is_gone(world: World) -> None:
    ports = world.ports(world.context().ports)
    action = new_service()
    await run_steps(NewServiceExecutor(ports).steps(action), action)
    cleanup = clean_up_of(action)
    steps = quick(CleanUpExecutor(ports)).steps(cleanup)
    assert [(s.name, s.keep_going) for s in steps] == [
        ("record", False),
        ("vault", True),
        ("kubernetes", True),
        ("gitlab", True),
        ("unregister", False),
    ]

    outputs, failed = await run_all(steps, cleanup)

    assert failed == {}
    assert outputs["gitlab"]["outcome"] == "payments/invoices removed for good"
    assert outputs["kubernetes"]["outcome"] == "invoices-staging, invoices-prod gone"
    assert outputs["vault"]["outcome"] == "gone in staging, prod"
    assert outputs["unregister"]["outcome"] == "all gone; the name invoices is free"
    assert "payments/invoices" not in world.gitlab.projects
    assert all(not c.namespaces for c in world.clusters.by_context.values())
    assert (world.vault.paths, world.vault.policies, world.vault.roles) == (set(), {}, {})
    assert "invoices" not in world.catalog.model.services
    again, failed = await run_all(steps, cleanup)  # nothing left: still fine
    assert failed == {}
    assert again["gitlab"]["outcome"] == "payments/invoices was not there (any more)"
    assert again["kubernetes"]["outcome"] == "none were there"


async def test_clean_up_with_vault_unconfigured_removes_the_rest_and_keeps_the_record(
    world: World,
) -> None:
    ports = world.ports(world.context().ports)
    action = new_service()
    await run_steps(NewServiceExecutor(ports).steps(action), action)
    no_vault = replace(ports, adapters=replace(ports.adapters, vault=None))
    cleanup = clean_up_of(action)
    steps = quick(CleanUpExecutor(no_vault)).steps(cleanup)

    outputs, failed = await run_all(steps, cleanup)

    assert set(outputs) == {"record", "kubernetes", "gitlab"}
    assert failed["vault"].startswith("Vault is not configured on this bot")
    assert failed["unregister"] == (
        "kept while these remain: Vault paths, policies and roles payments-invoices-* "
        "(staging, prod). Retry does only what failed"
    )
    assert "payments/invoices" not in world.gitlab.projects
    assert all(not c.namespaces for c in world.clusters.by_context.values())
    assert world.vault.policies  # untouched, and said to be there:
    kept = world.catalog.service("invoices")
    assert kept.removal is not None and kept.removal.requested_by == ALICE
    assert kept.removal.remains == (
        "Vault paths, policies and roles payments-invoices-* (staging, prod)",
    )

    # the platform team configures Vault; Retry does only what failed
    outputs, failed = await run_all(CleanUpExecutor(ports).steps(cleanup), cleanup, outputs)
    assert failed == {}
    assert (world.vault.paths, world.vault.policies, world.vault.roles) == (set(), {}, {})
    assert "invoices" not in world.catalog.model.services


async def test_clean_up_waits_for_terminating_namespaces_and_says_what_holds_them(
    world: World,
) -> None:
    ports = world.ports(world.context().ports)
    action = new_service()
    await run_steps(NewServiceExecutor(ports).steps(action), action)
    world.clusters.by_context["sandbox-staging"].linger = 0  # gone at the first look
    world.clusters.by_context["sandbox-prod"].linger = 10_000  # held by a finalizer
    executor = quick(CleanUpExecutor(ports))
    executor.namespace_wait = 0  # one look, then say what holds it
    cleanup = clean_up_of(action)
    reports: list[str] = []

    async def report(detail: str) -> None:
        reports.append(detail)

    context = StepContext(RunId("run-1"), cleanup, ALICE, {}, 1, report)
    with pytest.raises(StepFailed) as held:
        await executor.kubernetes(context)
    assert str(held.value) == (
        "still Terminating after 0 s: invoices-prod (Some resources are remaining: configmaps. "
        "has 1 resource instances). Retry waits again"
    )
    assert "invoices-staging" not in world.clusters.by_context["sandbox-staging"].namespaces
    assert any("invoices-prod: Terminating (Some resources are remaining" in r for r in reports)


async def test_clean_up_names_the_project_it_made_and_says_when_gitlab_keeps_it(
    world: World,
) -> None:
    ports = world.ports(world.context().ports)
    action = new_service()
    outputs, _ = await run_steps(NewServiceExecutor(ports).steps(action), action)
    world.gitlab.keep_marked = True  # as on GitLab.com: no removal before the retention ends
    cleanup = clean_up_of(action, project_id=outputs["gitlab"]["project_id"])
    steps = quick(CleanUpExecutor(ports)).steps(cleanup)

    done, failed = await run_all(steps, cleanup)

    assert failed == {}
    assert done["gitlab"]["outcome"] == (
        "GitLab marked it for deletion on 2025-06-03 and will not remove it at once here (not "
        "permitted): it keeps it as payments/invoices-deletion_scheduled-2 for its retention "
        "period (30 days unless your GitLab admins changed it), then removes it; the name "
        "payments/invoices is free already"
    )
    assert (done["gitlab"]["removal"], done["gitlab"]["marked_on"]) == ("scheduled", "2025-06-03")


async def test_clean_up_never_removes_a_service_from_platform_yml(world: World) -> None:
    ports = world.ports(world.context().ports)
    registry = FakeServiceRegistry(world.catalog)

    async def refuse(name: Any, definition: Any, *, remains: Any, by: Any) -> None:
        raise ValueError(f"service '{name}' is defined in platform.yml")

    registry.record_removal = refuse  # type: ignore[method-assign]
    ports = replace(ports, services=registry)
    cleanup = CleanUpService(
        service="checkout", team="payments", environments=("staging",), repository="x/y"
    )
    outputs, failed = await run_all(CleanUpExecutor(ports).steps(cleanup), cleanup)
    assert outputs == {}
    assert failed == {"record": "service 'checkout' is defined in platform.yml"}


# -- the Clean up button ---------------------------------------------------------------------


def click(user: str, run_id: str) -> Click:
    return Click(
        user=user,  # type: ignore[arg-type]
        team=SlackTeamId("T0SANDBOX"),
        action_id="newservice.cleanup",
        value=run_id,
        channel=SlackChannelId("C01PAYMENTS"),
        message_ts="1.0",
        response_url=None,
        trigger_id=None,
    )


async def test_clean_up_is_for_the_requester_or_an_admin(world: World) -> None:
    submitted = await world.runs.submit(
        new_service(), requested_by=ALICE, idempotency_key="k", reply_channel=None
    )
    button = CleanUpButton()
    refused = await button.click(world.context(BOB), click(BOB, submitted.run_id))
    assert refused is not None and refused.text.startswith("Only <@U01ALICE>")
    assert world.changes.proposals == []

    control = world.ports(world.context().ports).run_control
    assert isinstance(control, RunsWithActions)
    control.outputs_of[submitted.run_id] = {"gitlab": {"project_id": 7}}
    done = await button.click(world.context(ALICE), click(ALICE, submitted.run_id))
    assert done is not None and done.text.startswith("Cleaning up `invoices`")
    cleanup = world.changes.proposals[0]["action"]
    assert cleanup == CleanUpService(
        service="invoices",
        team="payments",
        environments=("staging", "prod"),
        repository="payments/invoices",
        project_id=7,  # the very project the Run made
    )
    again = await button.click(world.context(DAVE), click(DAVE, submitted.run_id))
    assert again is not None and again.text.startswith("This Run is not failed (any more)")


async def test_clean_up_of_a_run_that_is_not_a_new_service_does_nothing(world: World) -> None:
    submitted = await world.runs.submit(
        CleanUpService(service="x", team="payments", environments=("staging",), repository="a/x"),
        requested_by=ALICE,
        idempotency_key="k2",
    )
    button = CleanUpButton()
    for run_id in (submitted.run_id, "forged"):
        reply = await button.click(world.context(ALICE), click(ALICE, run_id))
        assert reply is not None and reply.text.startswith("That is not a new-service Run")
    assert world.changes.proposals == []


async def test_a_name_whose_namespace_exists_is_refused(world: World) -> None:
    cluster = world.clusters.by_context["sandbox-prod"]
    cluster.namespaces["orders-prod"] = NamespaceSpec(
        "orders-prod", "search", "orders", "prod", "search", "orders"
    )
    said = await typed(world, "tiny-api orders --team payments")
    assert "The namespace `orders-prod` already exists in prod." in said


async def test_names_too_long_with_team_and_environment_are_refused(world: World) -> None:
    world.catalog.model.teams["a" * 30] = world.catalog.model.teams["payments"]
    said = await typed(world, f"tiny-api {'b' * 30} --team {'a' * 30}", user=DAVE)
    assert f"`{'a' * 30}-{'b' * 30}-staging` is too long for Vault; use at most 24" in said


async def test_only_the_steps_the_template_asks_for_run(world: World) -> None:
    executor = NewServiceExecutor(world.ports(world.context().ports))
    action = new_service(steps=("gitlab", "catalog", "slack"))
    assert [s.name for s in executor.steps(action)] == ["gitlab", "catalog", "slack"]
    await run_steps(executor.steps(action), action)
    assert all(not c.namespaces for c in world.clusters.by_context.values())
    assert world.vault.paths == set()
    ((_, text),) = world.messenger.posts
    assert "*Vault:* none" in text


async def test_a_refused_change_is_said_to_the_requester(world: World) -> None:
    world.changes.refuse = "A new-service of `new-service/invoices` is in progress."
    said = await typed(world, "tiny-api invoices --team payments")
    assert said == "A new-service of `new-service/invoices` is in progress."
    values = {"template": "tiny-api", "name": "invoices", "team": "payments"}
    errors = await NewServiceForm().submit(world.context(), submission(values))
    assert errors == {"name": "A new-service of 'new-service/invoices' is in progress."}
