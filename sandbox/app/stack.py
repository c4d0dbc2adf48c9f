"""The sandbox: the real bot, on SQLite, wired to local stand-ins instead of Slack & co.

`SandboxStack` starts the stand-ins (Slack, GitLab, one Kubernetes API per cluster,
Argo CD; a real OpenBao and real Prometheus/Alertmanager when asked and installed) and
the bot (HTTP server, Run worker, outbox) configured to reach them through its ordinary
settings (GITLAB_URL, a KUBECONFIG with one context per cluster, VAULT_ADDR, ...), so
the real adapters run. It seeds the sample catalog's services in the clusters and in
Argo CD, so deploy, rollback, history and status have something to act on. It gives a
`SlackSender` that sends requests into the bot exactly as Slack would. The terminal
console (`sandbox.app.console`) and the tests both drive the bot through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from adapters.vault import VaultSecretStore
from app.bootstrap import PlatformBot, build_app
from app.settings import Settings
from engine.timers import ShiftedClock
from kernel.actions import Executor
from sandbox.app.postgres import SandboxPostgres
from sandbox.standins.argocd import ArgoCDStandIn
from sandbox.standins.binaries import ALERTMANAGER, PROMETHEUS
from sandbox.standins.gitlab import GitLabStandIn
from sandbox.standins.kubernetes import KubernetesStandIn
from sandbox.standins.kubernetes_rbac import ADMIN, BOT, Policy, shipped_policy
from sandbox.standins.observability import (
    AlertmanagerServer,
    MetricTarget,
    PrometheusServer,
)
from sandbox.standins.openbao import OpenBaoDevServer, free_port, throwaway_ca
from sandbox.standins.slack_api import (
    SlackChannel,
    SlackStandIn,
    SlackUser,
    SlackUserGroup,
    Workspace,
)
from sandbox.standins.slack_client import SlackSender
from sandbox.standins.velero import VeleroStandIn

SAMPLE_CONFIG = Path(__file__).parent / "sample" / "platform.yml"
VAULT_POLICY = Path(__file__).resolve().parents[2] / "deploy" / "vault" / "platform-bot.hcl"
"""The policy a platform team gives the bot; in the sandbox the bot's token holds only it."""
SIGNING_SECRET = "sandbox-signing-secret"  # noqa: S105 - a local stand-in's, not a secret

SANDBOX_WORKSPACE = Workspace(
    team_id="T0SANDBOX",
    team_name="Sandbox",
    bot_token="xoxb-sandbox-bot-token",  # noqa: S106
    app_token="xapp-sandbox-app-token",  # noqa: S106
    bot_user_id="U0PLATFORMBOT",
    users=(
        SlackUser("U01ALICE", "alice", "Alice Payments", "alice@example.com"),
        SlackUser("U02BOB", "bob", "Bob SRE", "bob@example.com"),
        SlackUser("U03CAROL", "carol", "Carol Search", "carol@example.com"),
        SlackUser("U04DAVE", "dave", "Dave Platform", "dave@example.com"),
        SlackUser("U05ERIN", "erin", "Erin Newcomer", "erin@example.com"),
    ),
    usergroups=(
        SlackUserGroup("S01PAYMENTS", "payments-team", "Payments", ("U01ALICE",)),
        SlackUserGroup("S02SRE", "sre", "SRE on call", ("U02BOB",)),
        SlackUserGroup("S03PLATFORM", "platform-admins", "Platform admins", ("U04DAVE",)),
    ),
    channels=(
        SlackChannel("C01PAYMENTS", "payments"),
        SlackChannel("C02SEARCH", "search"),
        SlackChannel("C03PLATFORM", "platform"),
        SlackChannel("C04AUDIT", "platform-audit"),
    ),
)
"""People who match the sample platform.yml: alice (payments), bob (SRE approver),
carol (search, listed by e-mail), dave (platform admin), erin (in no team)."""


GITLAB_TOKEN = "glpat-sandbox-token"  # noqa: S105 - local stand-ins' tokens, not secrets
KUBERNETES_TOKEN = "kube-sandbox-token"  # noqa: S105
"""The bot's token: its ServiceAccount, bound to only the shipped ClusterRoles (deploy/rbac)."""
KUBERNETES_ADMIN_TOKEN = "kube-sandbox-admin-token"  # noqa: S105
"""The platform team's token (system:masters): seeding, and what people do with kubectl."""
ARGOCD_TOKEN = "argocd-sandbox-token"  # noqa: S105
ALERTMANAGER_WEBHOOK_TOKEN = "alertmanager-sandbox-token"  # noqa: S105
GITLAB_WEBHOOK_TOKEN = "gitlab-webhook-sandbox-token"  # noqa: S105
GITLAB_GROUPS = ((10, "payments"), (11, "search"), (12, "sre"))
CLUSTERS = ("sandbox-staging", "sandbox-prod", "sandbox-prod-eu")
REGISTRY = "registry.example.com"
SEEDED_VERSIONS: dict[str, tuple[str, ...]] = {
    "checkout": ("1.4.1", "1.4.2"),
    "refunds": ("2.0.0", "2.0.1"),
    "search-api": ("0.9.0", "0.9.1"),
}
"""What the sandbox's clusters run at start: each service's releases, oldest first."""


@dataclass
class SandboxStack:
    """A running bot plus the stand-ins it talks to."""

    slack: SlackStandIn
    bot: PlatformBot
    sender: SlackSender
    gitlab: GitLabStandIn
    clusters: dict[str, KubernetesStandIn]
    argocd: ArgoCDStandIn
    vault_url: str | None = None
    vault_token: str | None = None
    """The OpenBao dev server's root token: the platform team's, not the bot's."""
    vault_bot_token: str | None = None
    """The bot's token: only the shipped policy (deploy/vault/platform-bot.hcl)."""
    alertmanager_url: str | None = None
    prometheus_url: str | None = None
    metrics: MetricTarget | None = None
    """With observability: the gauges the sandbox's alert rules watch (`set()` them)."""
    clock: ShiftedClock = field(default_factory=ShiftedClock)
    """The bot's time: `advance()` it (the console's `/advance 2h`) and timers fire."""

    @property
    def workspace(self) -> Workspace:
        return self.slack.workspace


@contextlib.asynccontextmanager
async def sandbox_stack(
    *,
    database_url: str | None = None,
    config: Path = SAMPLE_CONFIG,
    executors: Iterable[Executor] = (),
    workspace: Workspace = SANDBOX_WORKSPACE,
    socket_mode: bool = False,
    vault: bool = False,
    postgres: bool = False,
    observability: bool = False,
    rollout_seconds: float = 0.3,
    seed: bool = True,
    settings_overrides: dict[str, Any] | None = None,
    kubernetes_policy: Policy | None = None,
) -> AsyncIterator[SandboxStack]:
    """Start the stand-ins and the bot on loopback; stop everything on exit.

    `vault=True` starts a real OpenBao dev server (with `postgres=True` too, its database
    engine on the machine's PostgreSQL, sandbox/app/postgres.py), `observability=True` a real
    Prometheus (with SANDBOX_ALERT_RULES over a MetricTarget) and Alertmanager posting to
    the bot's webhook; both must be installed. Stand-ins are cheap and always started;
    `seed=False` leaves the clusters and Argo CD empty. The clusters serve HTTPS and enforce
    RBAC: the bot's token holds only the shipped ClusterRoles, or `kubernetes_policy`.
    """
    with tempfile.TemporaryDirectory(prefix="platform-bot-sandbox-") as scratch:
        async with contextlib.AsyncExitStack() as stack:
            slack = SlackStandIn(workspace, socket_mode_enabled=socket_mode)
            gitlab = GitLabStandIn(token=GITLAB_TOKEN, groups=GITLAB_GROUPS)
            clusters = {
                name: kubernetes_cluster(rollout_seconds, kubernetes_policy) for name in CLUSTERS
            }
            for cluster in clusters.values():  # Velero in every cluster, 10x faster than life
                VeleroStandIn(time_scale=0.1).install(cluster)
            argocd = ArgoCDStandIn(token=ARGOCD_TOKEN)
            for server in (slack, gitlab, *clusters.values(), argocd):
                await server.start()
                stack.push_async_callback(server.stop)
            bao = bot_token = None
            if vault:
                bao = OpenBaoDevServer()
                await asyncio.to_thread(bao.start)
                stack.callback(bao.stop)
                bot_token = await _vault_as_a_platform_team_sets_it_up(
                    bao, kubernetes=clusters["sandbox-staging"].url, scratch=Path(scratch)
                )
                if postgres:
                    databases = SandboxPostgres()
                    stack.callback(databases.stop)
                    config = await asyncio.to_thread(
                        databases.start,
                        vault_url=bao.url,
                        root_token=bao.token,
                        config=config,
                        scratch=Path(scratch),
                    )
            port = free_port()
            observed: dict[str, Any] = {}
            if observability:
                observed = await _start_observability(stack, bot_port=port)
            kubeconfig = Path(scratch) / "kubeconfig"
            kubeconfig.write_text(
                kubeconfig_yaml({n: c.kubeconfig_cluster() for n, c in clusters.items()})
            )
            if seed:
                await seed_clusters(clusters)
                seed_argocd(argocd)
            values: dict[str, Any] = dict(
                slack_bot_token=workspace.bot_token,
                slack_signing_secret=SIGNING_SECRET,
                slack_app_token=workspace.app_token if socket_mode else None,
                slack_api_url=slack.api_url,
                database_url=database_url or f"sqlite:///{Path(scratch) / 'sandbox.db'}",
                platform_config=config,
                host="127.0.0.1",
                port=port,
                worker_id="sandbox",
                alertmanager_url=observed.get("alertmanager_url"),
                prometheus_url=observed.get("prometheus_url"),
                alertmanager_webhook_token=ALERTMANAGER_WEBHOOK_TOKEN,
                gitlab_webhook_token=GITLAB_WEBHOOK_TOKEN,
                gitlab_url=gitlab.base_url,
                gitlab_token=GITLAB_TOKEN,
                kubeconfig=kubeconfig,
                argocd_url=argocd.base_url,
                argocd_token=ARGOCD_TOKEN,
                argocd_project="default",
                vault_addr=bao.url if bao else None,
                vault_token=bot_token,
                grafana_url="https://grafana.example.com",
                public_url=f"http://127.0.0.1:{port}",
            )
            settings = Settings(**{**values, **(settings_overrides or {})})
            clock = ShiftedClock()
            bot = build_app(settings, executors=executors, auto_upgrade=True, clock=clock)
            if seed and bao is not None and bot.ports.adapters.vault is not None:
                await seed_vault(bot)
            await bot.start()
            stack.push_async_callback(bot.stop)
            events_url = f"http://127.0.0.1:{bot.port}/slack/events"
            if not socket_mode:  # as manifest.yml sets it: options load at the request URL
                slack.options_load_url = events_url
            sender = SlackSender(
                events_url=events_url,
                signing_secret=SIGNING_SECRET,
                workspace=workspace,
                standin=slack,
                socket_mode=socket_mode,
            )
            stack.push_async_callback(sender.close)
            yield SandboxStack(
                slack=slack,
                bot=bot,
                sender=sender,
                gitlab=gitlab,
                clusters=clusters,
                argocd=argocd,
                vault_url=bao.url if bao else None,
                vault_token=bao.token if bao else None,
                vault_bot_token=bot_token,
                clock=clock,
                **observed,
            )


async def _vault_as_a_platform_team_sets_it_up(
    bao: OpenBaoDevServer, *, kubernetes: str, scratch: Path
) -> str:
    """What a platform team does once, with its own (root) token: let Vault trust the
    clusters' service accounts (one auth mount here, for the staging cluster's API),
    create the bot's transit key (a secret waiting for approval is kept encrypted with
    it), and give the bot a token with only the shipped policy. Returns the bot's token."""
    ca = await asyncio.to_thread(throwaway_ca, scratch)
    admin = VaultSecretStore(bao.url, bao.token)
    await admin.ensure_kubernetes_auth(kubernetes, ca_cert=ca, disable_local_ca_jwt=True)
    await admin.encrypt("the platform team creates the transit key once")
    policy = VAULT_POLICY.read_text(encoding="utf-8")
    await asyncio.to_thread(bao.write_policy, "platform-bot", policy)
    return await asyncio.to_thread(bao.token_with_only, "platform-bot")


SANDBOX_ERROR_METRIC = "sandbox_error_ratio"


def observability_installed() -> bool:
    """Prometheus and Alertmanager are there to start (PATH, or their variables)."""
    return PROMETHEUS.installed() and ALERTMANAGER.installed()


SANDBOX_ALERT_RULES = """
groups:
  - name: sandbox
    rules:
      - alert: HighErrorRate
        expr: sandbox_error_ratio > 0.05
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: >-
            {{ $labels.service }} in {{ $labels.env }} fails
            {{ $value | humanizePercentage }} of requests
          runbook_url: "https://runbooks.example.com/{{ $labels.service }}"
"""
"""The sandbox's one alert rule: set `sandbox_error_ratio{service=..., env=...}` above 0.05
on `stack.metrics` and it fires; set it to 0 and it resolves."""


async def _start_observability(
    stack: contextlib.AsyncExitStack, *, bot_port: int
) -> dict[str, Any]:
    """A MetricTarget, Alertmanager posting to the bot, and Prometheus over both."""
    metrics = MetricTarget()
    await metrics.start()
    stack.push_async_callback(metrics.stop)
    alertmanager = AlertmanagerServer(
        webhook_url=f"http://127.0.0.1:{bot_port}/alerts/alertmanager",
        bearer_token=ALERTMANAGER_WEBHOOK_TOKEN,
        group_by=("alertname", "service", "env"),
    )
    await stack.enter_async_context(alertmanager)
    prometheus = PrometheusServer(
        rules_yaml=SANDBOX_ALERT_RULES,
        targets=[metrics.base_url],
        alertmanager_url=alertmanager.url,
    )
    await stack.enter_async_context(prometheus)
    return {
        "alertmanager_url": alertmanager.url,
        "prometheus_url": prometheus.url,
        "metrics": metrics,
    }


def kubernetes_cluster(
    rollout_seconds: float = 0.3, policy: Policy | None = None
) -> KubernetesStandIn:
    """A sandbox cluster: HTTPS with its own CA; RBAC with the shipped ClusterRoles, the bot's
    token bound to them (as deploy/rbac/bindings.yaml binds its ServiceAccount), and an
    admin token for the platform team."""
    return KubernetesStandIn(
        users={KUBERNETES_TOKEN: BOT, KUBERNETES_ADMIN_TOKEN: ADMIN},
        policy=policy or shipped_policy(),
        rollout_seconds=rollout_seconds,
    )


def kubeconfig_yaml(servers: dict[str, Any], *, token: str = KUBERNETES_TOKEN) -> str:
    """A kubeconfig with one context (and cluster) per stand-in, token auth. Each server is a
    URL, or a kubeconfig cluster entry (`KubernetesStandIn.kubeconfig_cluster()`: the URL and
    the CA as `certificate-authority-data`)."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": n, "cluster": c if isinstance(c, dict) else {"server": c}}
                for n, c in servers.items()
            ],
            "users": [{"name": "platform-bot", "user": {"token": token}}],
            "contexts": [
                {"name": n, "context": {"cluster": n, "user": "platform-bot"}} for n in servers
            ],
            "current-context": next(iter(servers)),
        }
    )


SEED_PLACES = {
    "checkout": ("payments", ("sandbox-staging", "staging"), ("sandbox-prod", "prod")),
    "refunds": ("payments", ("sandbox-staging", "staging"), ("sandbox-prod", "prod")),
    "search-api": ("search", ("sandbox-staging", "staging"), ("sandbox-prod", "prod")),
}


async def seed_clusters(clusters: dict[str, KubernetesStandIn]) -> None:
    """Each sample service as a Deployment with two revisions in its Kubernetes envs,
    created through the stand-ins' HTTP API as `kubectl apply` and `set image` would."""
    headers = {"Authorization": f"Bearer {KUBERNETES_ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        await asyncio.gather(
            *(
                _seed_one(http, clusters[cluster], service=service, team=team, env=env)
                for service, (team, *places) in SEED_PLACES.items()
                for cluster, env in places
            )
        )


async def _seed_one(
    http: aiohttp.ClientSession, standin: KubernetesStandIn, *, service: str, team: str, env: str
) -> None:
    base, namespace = standin.url.rstrip("/"), f"{service}-{env}"
    tls = standin.client_ssl()
    versions = SEEDED_VERSIONS[service]
    image = f"{REGISTRY}/{team}/{service}"
    await _send(
        http,
        "POST",
        f"{base}/api/v1/namespaces",
        json={"metadata": {"name": namespace, "labels": _labels(team, service)}},
        ssl=tls,
    )
    deployments = f"{base}/apis/apps/v1/namespaces/{namespace}/deployments"
    await _send(
        http, "POST", deployments, json=_deployment(service, team, image, versions[0]), ssl=tls
    )
    for version in versions[1:]:
        await standin.wait_for("deployments", namespace, service, _available, within=10.0)
        cause = {"kubernetes.io/change-cause": f"deploy {version} (sandbox seed)"}
        container = {"name": service, "image": f"{image}:{version}"}
        patch = {
            "metadata": {"annotations": cause},
            "spec": {"template": {"spec": {"containers": [container]}}},
        }
        await _send(
            http,
            "PATCH",
            f"{deployments}/{service}",
            json=patch,
            headers={"Content-Type": "application/strategic-merge-patch+json"},
            ssl=tls,
        )
    await standin.wait_for("deployments", namespace, service, _available, within=10.0)


ARGOCD_REPO = "https://gitlab.example.com/payments/checkout-deploy.git"
ARGOCD_COMMITS = {
    "1.4.1": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    "1.4.2": "e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3",
    "1.4.3": "f00ba1234567890abcdef1234567890abcdef123",
}
"""The deploy repository's commits: 1.4.1 then 1.4.2 on main (HEAD), 1.4.3 on a release
branch; each tagged v<version>."""


def seed_argocd(argocd: ArgoCDStandIn) -> None:
    """checkout in prod-eu as an Argo CD Application with auto-sync off and history."""
    image = f"{REGISTRY}/payments/checkout"
    for version, sha in ARGOCD_COMMITS.items():
        branch = "release-1.4.3" if version == "1.4.3" else "main"
        argocd.add_commit(
            ARGOCD_REPO, sha, [f"{image}:{version}"], branch=branch, tags=[f"v{version}"]
        )
    deployed = [(ARGOCD_COMMITS[v], [f"{image}:{v}"]) for v in ("1.4.1", "1.4.2")]
    argocd.add_application(
        "checkout-prod-eu",
        repo_url=ARGOCD_REPO,
        path="overlays/prod-eu",
        revision=deployed[-1][0],
        images=deployed[-1][1],
        history=deployed,
    )


def _labels(team: str, service: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "platform-bot",
        "platform.example.com/team": team,
        "platform.example.com/service": service,
    }


def _deployment(service: str, team: str, image: str, version: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": service}
    return {
        "metadata": {
            "name": service,
            "labels": {**labels, "platform.example.com/team": team},
            "annotations": {"kubernetes.io/change-cause": f"deploy {version} (sandbox seed)"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": service,
                    "containers": [{"name": service, "image": f"{image}:{version}"}],
                },
            },
        },
    }


def _available(deployment: dict[str, Any]) -> bool:
    """The rollout is complete: every replica updated and available, no old ones left."""
    want = deployment.get("spec", {}).get("replicas")
    status = deployment.get("status", {})
    generation = deployment.get("metadata", {}).get("generation", 0)
    return bool(
        status.get("observedGeneration", 0) >= generation
        and status.get("replicas") == want
        and status.get("updatedReplicas") == want
        and status.get("availableReplicas") == want
    )


async def _send(
    http: aiohttp.ClientSession, method: str, url: str, *, ssl: Any = True, **kwargs: Any
) -> None:
    async with http.request(method, url, ssl=ssl, **kwargs) as response:
        if response.status >= 300:
            raise RuntimeError(f"sandbox seed: {method} {url}: {await response.text()}")


async def seed_vault(bot: PlatformBot) -> None:
    """What new-service would have made for the sample services: a KV path, an ACL policy
    and a Kubernetes auth role `<team>-<service>-<env>` per environment."""
    vault = bot.ports.adapters.vault
    assert vault is not None
    for service, (team, *places) in SEED_PLACES.items():
        for _, env in places:
            name = f"{team}-{service}-{env}"
            path = await vault.ensure_kv_path(team, service, env)
            await vault.ensure_policy(name, [path])
            await vault.ensure_kubernetes_role(
                name, service_account=service, namespace=f"{service}-{env}", policies=[name]
            )
