"""One typed settings object, read from the environment once and passed everywhere.

Names follow the configuration contract in the README (12-factor, Bolt's usual names).
Nothing else in the code reads `os.environ`.

Every secret also has a `<NAME>_FILE` variant (`SLACK_BOT_TOKEN_FILE=/run/secrets/slack`),
as Kubernetes and Docker mount secrets as files: the file is read and its trailing
newline stripped. Setting both is an error, as is a file that cannot be read or is empty.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

SECRET_SETTINGS = (
    "slack_bot_token",
    "slack_signing_secret",
    "slack_app_token",
    "database_url",
    "vault_token",
    "gitlab_token",
    "argocd_token",
    "alertmanager_webhook_token",
    "gitlab_webhook_token",
)
"""The settings that may hold a secret, so each has a `<NAME>_FILE` variant
(`DATABASE_URL` too: a PostgreSQL URL carries its password)."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    log_level: str = Field("INFO", description="Python log level name: " + ", ".join(LOG_LEVELS))
    log_format: str = Field("json", pattern="^(json|text)$", description="json or text")
    worker_id: str | None = Field(None, description="Name of this replica in Run claims")

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
            return value.strip().upper()
        raise PydanticCustomError(
            "log_level", "use one of {levels}", {"levels": ", ".join(LOG_LEVELS)}
        )

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            SecretFiles(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )


class SecretFiles(PydanticBaseSettingsSource):
    """`<NAME>_FILE` for every secret setting: the file's content, trailing newline cut."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every file at once

    def __call__(self) -> dict[str, Any]:
        environ = {key.upper(): value for key, value in os.environ.items()}
        values: dict[str, Any] = {}
        errors: list[InitErrorDetails] = []
        for name in SECRET_SETTINGS:
            variable = name.upper()
            path = environ.get(f"{variable}_FILE")
            if path is None:
                continue
            problem = None
            if variable in environ:
                problem = f"set {variable} or {variable}_FILE, not both"
            else:
                try:
                    content = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
                except (OSError, UnicodeDecodeError) as exc:
                    reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                    problem = f"cannot read {path}: {reason}"
                else:
                    if content:
                        values[name] = content
                    else:
                        problem = f"{path} is empty"
            if problem is not None:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError("secret_file", problem),
                        loc=(f"{name}_file",),
                        input=path,
                    )
                )
        if errors:
            raise ValidationError.from_exception_data(Settings.__name__, errors)
        return values
