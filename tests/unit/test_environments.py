"""The environments feature's pure parts: names, times to live, branch slugs, CPU
quantities, fingerprints, and the kinds policy can match."""

from __future__ import annotations

import pytest

from features.environments.actions import (
    CreateEnvironment,
    CreateLargeEnvironment,
    ExtendEnvironment,
    ExtendEnvironmentBeyondMax,
    branch_slug,
    dns_label,
    hours_text,
    parse_ttl,
)
from features.environments.planning import cpu_of, default_name, namespace_of
from kernel.errors import UsageError


@pytest.mark.parametrize("name", ["a", "co-demo", "x1", "a" * 40])
def test_dns_labels_pass(name: str) -> None:
    assert dns_label(name, what="name", max_length=40) == name


@pytest.mark.parametrize("name", ["", "A", "1abc", "-a", "a-", "a_b", "a.b", "a" * 41, "é"])
def test_not_dns_labels_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(UsageError) as caught:
        dns_label(name, what="environment name", max_length=40)
    assert "not a valid environment name" in caught.value.message
    assert "at most 40 characters" in caught.value.message


@pytest.mark.parametrize(("text", "hours"), [("3d", 72), ("12h", 12), ("1d12h", 36), ("1H", 1)])
def test_ttl(text: str, hours: int) -> None:
    assert parse_ttl(text, max_hours=168) == hours


@pytest.mark.parametrize("text", ["", "0h", "3w", "d", "1.5d", "-1d"])
def test_bad_ttl(text: str) -> None:
    with pytest.raises(UsageError):
        parse_ttl(text, max_hours=168)


def test_ttl_over_the_maximum_says_the_maximum() -> None:
    with pytest.raises(UsageError) as caught:
        parse_ttl("8d", max_hours=168)
    assert "maximum (7d)" in caught.value.message
    assert hours_text(36) == "1d12h" and hours_text(5) == "5h"


@pytest.mark.parametrize(
    ("branch", "slug"),
    [
        ("main", "main"),
        ("Feature/Fast-Pay", "feature-fast-pay"),
        ("fix_1.2", "fix-1-2"),
        ("-x-", "x"),
        ("a" * 80, "a" * 63),
    ],
)
def test_branch_slug_is_gitlabs_ref_slug(branch: str, slug: str) -> None:
    assert branch_slug(branch) == slug


def test_cpu_quantities_and_names() -> None:
    assert cpu_of("2") == 2.0 and cpu_of("500m") == 0.5 and cpu_of("x") == 0.0
    assert namespace_of("co-demo") == "env-co-demo"
    name = default_name("checkout", "seed")
    assert name.startswith("checkout-") and dns_label(name, what="n", max_length=40)
    assert default_name("checkout", "seed") == name


def _create(
    kind: type[CreateEnvironment] = CreateEnvironment, **changes: object
) -> CreateEnvironment:
    fields: dict[str, object] = dict(
        name="co-demo",
        service="checkout",
        team="payments",
        env="staging",
        cluster="sandbox-staging",
        namespace="env-co-demo",
        version="1.4.1",
        image="registry.example.com/payments/checkout:1.4.1",
        size="small",
        quota={"requests.cpu": "1"},
        cpu=1.0,
        hours=72,
    )
    fields.update(changes)
    return kind(**fields)  # type: ignore[arg-type]


def test_an_approval_covers_exactly_the_quota_and_time_asked() -> None:
    base = _create()
    assert base.fingerprint() == _create().fingerprint()
    assert base.fingerprint() != _create(quota={"requests.cpu": "4"}).fingerprint()
    assert base.fingerprint() != _create(hours=96).fingerprint()
    assert _create(CreateLargeEnvironment).kind == "env.create-large"
    assert base.affected_environment() == "staging" and base.lock_key() == "env:co-demo"


def test_extensions_past_the_maximum_are_their_own_kind() -> None:
    fields = dict(
        env_id="r1",
        name="n",
        service="checkout",
        team="payments",
        env="staging",
        from_generation=0,
        hours=24,
    )
    assert ExtendEnvironment(**fields).kind == "env.extend"  # type: ignore[arg-type]
    assert ExtendEnvironmentBeyondMax(**fields).kind == "env.extend-beyond-max"  # type: ignore[arg-type]
