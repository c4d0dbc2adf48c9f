"""Backups without sockets: TTLs, what each Action tells the approval policy, outcomes in
words, the golden path's pre-backup hook, and the Role the Velero adapter needs."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from catalog.load import load_platform_model
from catalog.template_checks import sample_context
from catalog.templates import load_templates
from features.approvals.policy import requirement_for
from features.backups.actions import RestoreCopy, RestoreOver, TakeBackup, parse_ttl
from features.backups.render import backup_line, backup_outcome, restore_outcome
from kernel.errors import UsageError
from kernel.ports.backups import BackupInfo, RestoreInfo
from sandbox.standins.binaries import KUBECTL
from tests.unit.fakes import REPO_ROOT

SAMPLE = load_platform_model(REPO_ROOT / "sandbox" / "app" / "sample" / "platform.yml")
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def backup(**changes: object) -> BackupInfo:
    values: dict[str, object] = dict(
        name="checkout-prod-1",
        phase="Completed",
        namespaces=("checkout-prod",),
        storage_location="default",
        created_at=NOW - timedelta(hours=3),
        started_at=NOW - timedelta(hours=3),
        completed_at=NOW - timedelta(hours=2),
        expires_at=NOW + timedelta(days=29),
        ttl="720h0m0s",
        items_done=40,
        items_total=40,
        warnings=0,
        errors=0,
        failure_reason="",
        validation_errors=(),
        schedule=None,
        labels={},
    )
    values.update(changes)
    return BackupInfo(**values)  # type: ignore[arg-type]


def restore(**changes: object) -> RestoreInfo:
    values: dict[str, object] = dict(
        name="r1",
        backup="checkout-prod-1",
        phase="Completed",
        namespace_mapping={},
        existing_policy="update",
        items_done=40,
        items_total=40,
        warnings=0,
        errors=0,
        failure_reason="",
        validation_errors=(),
        labels={},
    )
    values.update(changes)
    return RestoreInfo(**values)  # type: ignore[arg-type]


def restore_action(kind: type[RestoreCopy], target: str) -> RestoreCopy:
    return kind(
        service="checkout",
        env="prod",
        team="payments",
        cluster="sandbox-prod",
        backup_name="checkout-prod-1",
        restore_name="checkout-prod-1-2",
        source_namespace="checkout-prod",
        target_namespace=target,
        items=40,
        backup_phase="Completed",
    )


@pytest.mark.parametrize(("text", "hours"), [("720h", 720), ("30d", 720), ("7d12h", 180)])
def test_ttls(text: str, hours: int) -> None:
    assert parse_ttl(text, max_hours=2160) == hours


@pytest.mark.parametrize(("text", "said"), [("0h", "from 1 hour"), ("soon", "not a TTL")])
def test_bad_ttls(text: str, said: str) -> None:
    with pytest.raises(UsageError, match=said):
        parse_ttl(text, max_hours=2160)


def test_only_a_restore_over_the_live_namespace_waits_for_approval_in_prod() -> None:
    take = TakeBackup(
        service="checkout",
        env="prod",
        team="payments",
        cluster="sandbox-prod",
        namespace="checkout-prod",
        backup_name="b",
        ttl_hours=720,
    )
    assert requirement_for(SAMPLE, take) is None
    assert requirement_for(SAMPLE, restore_action(RestoreCopy, "checkout-copy")) is None
    over_a_copy = restore_action(RestoreOver, "checkout-prod-restore-1")
    assert requirement_for(SAMPLE, over_a_copy) is None
    over = restore_action(RestoreOver, "checkout-prod")
    needed = requirement_for(SAMPLE, over)
    assert needed is not None and needed.rule == "prod-restore" and needed.require_reason
    assert over.lock_key() == "restore:sandbox-prod/checkout-prod"
    assert "*Overwritten*" in "\n".join(over.change_lines())
    assert "Nothing is overwritten" in "\n".join(restore_action(RestoreCopy, "x").change_lines())


def test_outcomes_say_each_phase_in_words() -> None:
    assert "*Completed*: 40/40 items; kept until 2027-01-01" in backup_outcome(backup())
    partial = backup_outcome(backup(phase="PartiallyFailed", items_done=38, errors=2))
    assert "38/40 items backed up, 2 item error(s)" in partial
    assert "velero backup logs checkout-prod-1" in partial
    failed = backup_outcome(backup(phase="Failed", failure_reason="upload <failed>"))
    assert "*Failed*: upload &lt;failed&gt;" in failed
    refused = backup_outcome(backup(phase="FailedValidation", validation_errors=("no BSL",)))
    assert "(FailedValidation): no BSL" in refused
    said = restore_outcome(restore(phase="PartiallyFailed", errors=1, warnings=2), target="ns")
    assert "1 error(s), 2 warning(s)" in said and "velero restore describe r1" in said


def test_a_list_line_has_phase_counts_age_expiry_and_schedule() -> None:
    line = backup_line(backup(schedule="checkout-prod-daily"), NOW)
    assert line == (
        ":white_check_mark: `checkout-prod-1` *Completed* · 40/40 items · taken 3h ago · "
        "expires in 29d · by schedule `checkout-prod-daily`"
    )


@pytest.mark.parametrize("name", ["node-postgres", "python-fastapi"])
def test_the_golden_path_dumps_its_database_before_each_backup(name: str) -> None:
    template = load_templates(REPO_ROOT / "templates")[name]
    files = template.render(sample_context(template, description="d"))
    dump = yaml.safe_load(files["k8s/db-dump.yaml"])
    pod = dump["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    command = json.loads(annotations["pre.hook.backup.velero.io/command"])
    assert command[:2] == ["/bin/sh", "-c"] and "pg_dump --format=custom" in command[2]
    assert annotations["pre.hook.backup.velero.io/on-error"] == "Fail"
    assert annotations["backup.velero.io/backup-volumes"] == "dump"
    assert annotations["pre.hook.backup.velero.io/container"] == "pg-dump"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["pg-dump"]
    assert dump["spec"]["replicas"] == 1  # one dump per backup
    assert "k8s/db-dump.yaml" in files[".gitlab-ci.yml"]


def test_the_velero_role_grants_what_the_adapter_calls() -> None:
    source = (REPO_ROOT / "adapters" / "velero.py").read_text(encoding="utf-8")
    helpers = {"_get": "get", "_create": "create", "_list": "list", "_delete": "delete"}
    calls = {
        (plural, helpers[helper])
        for helper, plural in re.findall(
            r"self\.(_get|_create|_list|_delete)\(\s*\"(\w+)\"", source
        )
    }
    calls |= {("schedules", "patch")} if "patch_namespaced_custom_object" in source else set()
    verbs = {"read": "get", "create": "create", "patch": "patch", "delete": "delete"}
    calls |= {
        (f"{resource}s", verbs[verb])
        for verb, resource in re.findall(r"self\._core\.(\w+?)_namespaced_(config_map)", source)
    }
    done = subprocess.run(
        [str(KUBECTL.find()), "kustomize", str(REPO_ROOT / "deploy" / "velero-rbac")],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [role, binding] = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "velero"
    granted = {
        (resource, verb)
        for rule in role["rules"]
        if rule["apiGroups"] in (["velero.io"], [""])
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {(r.replace("config_maps", "configmaps"), v) for r, v in calls}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "platform-bot", "namespace": "platform-bot"}
    ]
