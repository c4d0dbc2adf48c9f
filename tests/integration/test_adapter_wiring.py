"""The bot builds the real adapters from its settings, and says what is wrong when it can't."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bootstrap import StartupError, build_adapters, build_app
from app.settings import Settings
from catalog import Catalog
from catalog.load import load_platform_model
from kernel.errors import NotConfigured
from sandbox.app.stack import SAMPLE_CONFIG, kubeconfig_yaml


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        slack_bot_token="xoxb-test",
        slack_signing_secret="secret",
        database_url=f"sqlite:///{tmp_path / 'engine.db'}",
        platform_config=SAMPLE_CONFIG,
        **overrides,  # type: ignore[arg-type]
    )


def test_nothing_configured_means_no_adapters(tmp_path: Path) -> None:
    catalog = Catalog(load_platform_model(SAMPLE_CONFIG))
    adapters = build_adapters(settings(tmp_path), catalog)

    assert all(value is None for value in vars(adapters).values())
    with pytest.raises(NotConfigured, match="needs GITLAB_URL and GITLAB_TOKEN"):
        adapters.require("gitlab")


def test_each_configured_system_gets_its_adapter(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    clusters = ("sandbox-staging", "sandbox-prod", "sandbox-prod-eu")
    kubeconfig.write_text(kubeconfig_yaml({c: "http://127.0.0.1:1" for c in clusters}))
    catalog = Catalog(load_platform_model(SAMPLE_CONFIG))

    adapters = build_adapters(
        settings(
            tmp_path,
            kubeconfig=kubeconfig,
            gitlab_url="http://127.0.0.1:2",
            gitlab_token="glpat-x",
            argocd_url="http://127.0.0.1:3",
            argocd_token="argo-x",
            grafana_url="https://grafana.example.com",
        ),
        catalog,
    )

    assert adapters.kubernetes is not None and adapters.kubernetes.contexts() == sorted(clusters)
    assert adapters.gitlab is not None and adapters.argocd is not None
    assert adapters.vault is None and adapters.alertmanager is None
    assert "glpat-x" not in repr(adapters)


def test_a_cluster_missing_from_the_kubeconfig_stops_start_up_with_the_fix(
    tmp_path: Path,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_yaml({"sandbox-staging": "http://127.0.0.1:1"}))

    with pytest.raises(StartupError) as refused:
        build_app(settings(tmp_path, kubeconfig=kubeconfig))

    message = str(refused.value)
    assert "sandbox-prod" in message
    assert "must be a context in KUBECONFIG" in message
