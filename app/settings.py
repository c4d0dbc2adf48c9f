"""One typed settings object, read from the environment once and passed everywhere.

Names follow the configuration contract in the README (12-factor, Bolt's usual names).
Nothing else in the code reads `os.environ`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the bot needs to know about where it runs."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    slack_bot_token: SecretStr | None = Field(None, description="Bot token (xoxb-...)")
    slack_signing_secret: SecretStr | None = Field(
        None, description="Signs every request Slack sends us; required in HTTP mode"
    )
    slack_app_token: SecretStr | None = Field(
        None, description="App-level token (xapp-...); when set, the bot uses Socket Mode"
    )
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL")
    slack_team_id: str | None = Field(
        None,
        description="The only Slack workspace we answer; default: the bot token's own (auth.test)",
    )
    database_url: str = Field("sqlite:///platform-bot.db", description="SQLAlchemy URL")
    platform_config: Path = Field(Path("platform.yml"), description="The platform model (YAML)")
    kubeconfig: Path | None = Field(None, description="kubeconfig; contexts named per environment")
    kubernetes_service_host: str | None = Field(
        None, description="Set by Kubernetes inside a pod: use the in-cluster service account"
    )
    vault_addr: AnyHttpUrl | None = None
    vault_token: SecretStr | None = None
    gitlab_url: AnyHttpUrl | None = None
    gitlab_token: SecretStr | None = None
    argocd_url: AnyHttpUrl | None = None
    argocd_token: SecretStr | None = None
    argocd_project: str | None = Field(
        None, description="Argo CD project of our Applications (lets a missing one be a 404)"
    )
    prometheus_url: AnyHttpUrl | None = None
    alertmanager_url: AnyHttpUrl | None = None
    grafana_url: AnyHttpUrl | None = None
    alertmanager_webhook_token: SecretStr | None = Field(
        None, description="Bearer token Alertmanager must send; unset means the webhook is refused"
    )
    gitlab_webhook_token: SecretStr | None = Field(
        None, description="Secret token GitLab must send as X-Gitlab-Token; unset means refused"
    )
    public_url: AnyHttpUrl | None = Field(
        None,
        description="Where people's browsers reach the bot (its ingress), e.g. "
        "https://platform-bot.example.com; builds the secrets page's single-use links. "
        "Unset: `secret set` offers a Slack modal instead",
    )
    port: int = Field(3000, ge=0, le=65535, description="HTTP port")
    host: str = Field("0.0.0.0", description="HTTP bind address")  # noqa: S104 - a server's job
    log_level: str = Field("INFO", description="Python log level name")
    log_format: str = Field("json", pattern="^(json|text)$", description="json or text")
    worker_id: str | None = Field(None, description="Name of this replica in Run claims")

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None
