"""deploy/: every overlay renders with `kubectl kustomize`, every object is valid against
the Kubernetes schemas (PyPI kubernetes-validate, strict: no unknown fields), and the
objects say what docs/operations.md promises (replicas, probes, non-root, read-only
root, secrets as files, a migration hook, the scrape annotation). The golden-path
skeletons' manifests get the same schema check. The ClusterRoles grant exactly what
adapters/kubernetes.py calls, and the Argo CD lines what adapters/argocd.py calls.
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.settings import SECRET_SETTINGS
from catalog.load import load_platform_model
from catalog.template_checks import SAMPLE_DESCRIPTIONS, sample_context
from catalog.templates import load_templates
from sandbox.standins.binaries import KUBECTL
from tests.unit.fakes import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
"""The oldest Kubernetes we claim (each version's schemas ship with the package) and the
newest it knows."""
MODE_SECRETS = {"socket-mode": "SLACK_APP_TOKEN", "http": "SLACK_SIGNING_SECRET"}


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [str(KUBECTL.find()), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def the(objects: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def validate(document: dict[str, Any], where: str) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise AssertionError(f"{where}: Kubernetes {version}: {path}: {exc.message}") from None


def test_there_are_overlays_for_socket_mode_and_http() -> None:
    assert OVERLAYS == ["http", "socket-mode"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_an_overlay_is_valid_kubernetes(overlay: str) -> None:
    objects = rendered(overlay)

    for document in objects:
        validate(document, f"{overlay}: {document['kind']}/{document['metadata']['name']}")
    kinds = sorted({o["kind"] for o in objects})
    assert {
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Job",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    } <= set(kinds), kinds


def test_the_validator_catches_a_wrong_field() -> None:
    deployment = dict(the(rendered("http"), "Deployment"))
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}

    with pytest.raises(AssertionError, match="replica"):
        validate(broken, "broken")


def container(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    spec = the(objects, kind)["spec"]["template"]["spec"]
    [only] = spec["containers"]
    return dict(only)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deployment_is_two_non_root_read_only_probed_spread_replicas(overlay: str) -> None:
    objects = rendered(overlay)
    deployment = the(objects, "Deployment")
    pod = deployment["spec"]["template"]
    bot = container(objects, "Deployment")

    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert bot["securityContext"]["readOnlyRootFilesystem"] is True
    assert bot["securityContext"]["allowPrivilegeEscalation"] is False
    assert bot["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert bot["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert bot["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(bot["resources"]["requests"])
    assert "memory" in bot["resources"]["limits"]
    spread = pod["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    for constraint in spread:
        assert (
            constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        )
    assert [c["command"] + c["args"] for c in [bot]] == [["platform-bot", "serve"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_pdb_and_network_policy_select_the_bots_pods(overlay: str) -> None:
    objects = rendered(overlay)
    labels = the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    port = container(objects, "Deployment")["ports"][0]

    service = the(objects, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    pdb = the(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1
    policy = the(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    for rule in policy["spec"]["ingress"]:
        assert [p["port"] for p in rule["ports"]] == [port["containerPort"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_is_told_where_to_scrape(overlay: str) -> None:
    objects = rendered(overlay)
    annotations = the(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    port = container(objects, "Deployment")["ports"][0]["containerPort"]

    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def _file_variables(spec: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in spec.get("env", []) if e["name"].endswith("_FILE")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_token_comes_from_the_secret_as_a_file(overlay: str) -> None:
    objects = rendered(overlay)
    bot = container(objects, "Deployment")
    files = _file_variables(bot)
    mounts = {m["name"]: m["mountPath"] for m in bot["volumeMounts"]}
    volumes = {
        v["name"]: v for v in the(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }

    wanted = {name.upper() for name in SECRET_SETTINGS} - set(MODE_SECRETS.values())
    wanted.add(MODE_SECRETS[overlay])
    assert {name.removesuffix("_FILE") for name in files} == wanted
    secret_mounts = [n for n, v in volumes.items() if v.get("secret", {}).get("secretName")]
    assert [mounts[n] for n in secret_mounts] == ["/secrets"]
    for path in files.values():
        assert path.startswith("/secrets/")
    plain = {e["name"] for e in bot.get("env", []) if "value" in e or "valueFrom" in e}
    assert not plain & {name.upper() for name in SECRET_SETTINGS}, "a secret as plain env"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_db_upgrade_before_the_deployment_rolls(overlay: str) -> None:
    objects = rendered(overlay)
    job = the(objects, "Job")
    migrate = container(objects, "Job")

    assert migrate["command"] + migrate["args"] == ["platform-bot", "db", "upgrade"]
    assert migrate["image"] == container(objects, "Deployment")["image"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert _file_variables(migrate) == {"DATABASE_URL_FILE": "/secrets/database-url"}
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_shipped_platform_yml_is_valid_and_mounted_where_the_bot_reads_it(
    tmp_path: Path,
) -> None:
    objects = rendered("http")
    config = the(objects, "ConfigMap", _config_map_name(objects))
    text = config["data"]["platform.yml"]
    (tmp_path / "platform.yml").write_text(text, encoding="utf-8")

    model = load_platform_model(tmp_path / "platform.yml")

    assert model.templates_dir == "/usr/share/platform-bot/templates"
    bot = container(objects, "Deployment")
    env = {e["name"]: e.get("value") for e in bot["env"]}
    assert env["PLATFORM_CONFIG"] == "/config/platform.yml"
    assert {"name": "config", "mountPath": "/config", "readOnly": True} in bot["volumeMounts"]


def _config_map_name(objects: tuple[dict[str, Any], ...]) -> str:
    [name] = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "ConfigMap" and "platform.yml" in o.get("data", {})
    ]
    return str(name)


def test_the_http_overlay_exposes_only_slacks_and_gitlabs_paths() -> None:
    ingress = the(rendered("http"), "Ingress")
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]

    assert sorted(paths) == ["/slack/events", "/webhooks/gitlab"]
    assert ingress["spec"]["tls"]
    assert not [o for o in rendered("socket-mode") if o["kind"] == "Ingress"]


# -- the golden-path skeletons' manifests ---------------------------------------------------

TEMPLATES = load_templates(REPO_ROOT / "templates")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("description", SAMPLE_DESCRIPTIONS)
def test_every_skeleton_manifest_is_valid_kubernetes(name: str, description: str) -> None:
    template = TEMPLATES[name]
    files = template.render(sample_context(template, description=description))
    manifests = {p: c for p, c in files.items() if p.startswith("k8s/")}
    assert manifests, f"{name} ships no k8s/ manifests"

    for path, content in manifests.items():
        for document in yaml.safe_load_all(content):
            if document:
                validate(document, f"{name}/skeleton/{path}")


# -- least privilege: the ClusterRoles grant what the adapter calls ------------------------

API_GROUPS = {
    "_core": "",
    "_apps": "apps",
    "_rbac": "rbac.authorization.k8s.io",
    "_networking": "networking.k8s.io",
}
VERBS = {
    "create": "create",
    "read": "get",
    "list": "list",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
}


def adapter_calls() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every API call in the Kubernetes adapter's modules
    (adapters/kubernetes*.py), read from their source:
    `self._apps.list_namespaced_replica_set(...)` is (apps, replicasets, list)."""
    calls: set[tuple[str, str, str]] = set()
    trees = [
        ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted((REPO_ROOT / "adapters").glob("kubernetes*.py"))
    ]
    for node in (node for tree in trees for node in ast.walk(tree)):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)):
            continue
        api = node.value.attr
        if api not in API_GROUPS:
            continue
        verb, _, rest = node.attr.partition("_")
        resource = rest.removeprefix("namespaced_").replace("_", "")
        plural = (
            resource[:-1] + "ies"
            if resource.endswith("y")
            else resource + "es"
            if resource.endswith("s")
            else resource + "s"
        )
        calls.add((API_GROUPS[api], plural, VERBS[verb]))
    return calls


def granted(objects: tuple[dict[str, Any], ...]) -> set[tuple[str, str, str]]:
    rules = [r for o in objects if o["kind"] == "ClusterRole" for r in o["rules"]]
    return {
        (group, resource, verb)
        for rule in rules
        if not rule.get("resourceNames")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_adapter_calls_are_read_from_its_source() -> None:
    calls = adapter_calls()

    assert ("", "namespaces", "create") in calls
    assert ("apps", "replicasets", "list") in calls
    assert ("networking.k8s.io", "networkpolicies", "create") in calls
    assert len(calls) >= 15


def test_the_cluster_roles_grant_exactly_what_the_adapter_calls() -> None:
    objects = rendered("http")

    assert granted(objects) == adapter_calls()


def test_the_bot_may_bind_only_the_cluster_roles_it_hands_out() -> None:
    """`bind` only on the roles the bot puts in RoleBindings: the team's (new-service)
    and the access grants' (`access.roles` of the sample platform.yml, the defaults)."""
    from adapters.kubernetes_namespaces import namespace_objects
    from catalog.load import load_platform_model
    from kernel.ports.systems import NamespaceSpec

    spec = NamespaceSpec(
        name="x-dev",
        team="t",
        service="x",
        environment="dev",
        quota={},
        default_limits={},
        default_requests={},
        rbac_group="g",
        service_account="x",
    )
    handed_out = {
        body.role_ref.name for kind, _, body in namespace_objects(spec) if kind == "RoleBinding"
    }
    sample = load_platform_model(REPO_ROOT / "sandbox" / "app" / "sample" / "platform.yml")
    assert sample.access is not None
    handed_out |= set(sample.access.roles.values())
    rules = [
        r
        for o in rendered("http")
        if o["kind"] == "ClusterRole"
        for r in o["rules"]
        if r.get("resourceNames")
    ]

    assert rules == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": sorted(handed_out),
        }
    ]


def test_every_cluster_role_is_bound_to_the_bots_service_account() -> None:
    objects = rendered("http")
    account = the(objects, "ServiceAccount")
    roles = {o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"}
    bound = {
        b["roleRef"]["name"]
        for b in objects
        if b["kind"] == "ClusterRoleBinding"
        and b["subjects"]
        == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": account["metadata"]["namespace"],
            }
        ]
    }
    assert bound == roles
    pod = the(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_the_argocd_rbac_lines_grant_what_the_adapter_calls() -> None:
    source = (REPO_ROOT / "adapters" / "argocd.py").read_text(encoding="utf-8")
    called = set(re.findall(r'self\._call\(\s*"([A-Z]+)", name(?:, "([a-z]+)")?', source))
    lines = [
        line.split(", ")
        for line in (DEPLOY / "argocd" / "policy.csv").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    actions = {p[3] for p in lines if p[0] == "p" and p[2] == "applications" and p[5] == "allow"}
    # Argo CD's server checks: GET -> get, PATCH -> update, POST sync|rollback -> sync
    needed = {{"GET": "get", "PATCH": "update", "POST": "sync"}[method] for method, _ in called}

    assert called == {("GET", ""), ("POST", "sync"), ("POST", "rollback"), ("PATCH", "")}
    assert actions == needed
    assert ["g", "platform-bot", "role:platform-bot"] in lines
