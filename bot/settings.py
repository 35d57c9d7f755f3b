"""GRACE's configuration: environment first, then the YAML file named by GRACE_CONFIG.

Every error names what the operator must fix: the variable, or the file and
the field, never a traceback.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from engine.api import (
    ApprovalPolicy,
    Autonomy,
    Policy,
    ReportSchedule,
    Route,
    executor_plugins,
    specs,
    webhook_plugins,
)

CONFIG_ENV = "GRACE_CONFIG"

REPLICA_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What a replica's name may be: it is stored, logged and shown, never parsed."""


class ConfigError(Exception):
    """A configuration mistake, worded for the operator."""


class Expiry(BaseModel):
    """Seconds a plan may wait for approval before it expires, per tier."""

    model_config = ConfigDict(extra="forbid")
    tier1: float = Field(1800, gt=0, description="only while paused does tier 1 wait")
    tier2: float = Field(1800, gt=0)
    tier3: float = Field(3600, gt=0)

    def by_tier(self) -> dict[int, float]:
        return {1: self.tier1, 2: self.tier2, 3: self.tier3}


class Approvers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier2: list[str] = Field(default_factory=list)
    tier3: list[str] = Field(default_factory=list)


CommaList = Annotated[list[str], NoDecode]


class CoreSettings(BaseSettings):
    """GRACE's own settings; `Settings` adds what each webhook source reads."""

    # Field names are the YAML keys; their variables are GRACE_<KEY>, except Slack's own.
    model_config = SettingsConfigDict(extra="forbid", env_prefix="GRACE_", populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    db: str = Field(
        "grace.db", min_length=1, description="a SQLite file path or a postgresql:// URL"
    )
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    alert_channels: CommaList = Field(default_factory=list)
    webhook_token: SecretStr | None = None
    default_channel: str | None = None
    snapshot_dir: Path | None = None
    slack_rate: float = Field(1.0, gt=0, description="Slack writes per second per channel")
    slack_burst: int = Field(3, ge=1, description="writes a channel may burst above the rate")
    routes: list[Route] = Field(default_factory=list)
    approvers: Approvers = Field(default_factory=Approvers)
    approval_expiry: Expiry = Field(default_factory=Expiry)
    autonomy: Autonomy = Field(
        default_factory=Autonomy, description="when a playbook's record changes its tier"
    )
    tick_seconds: float = Field(5.0, gt=0, le=300, description="how often expiry is checked")
    replica: str = Field(
        default_factory=lambda: socket.gethostname(),  # looked up when read
        validate_default=True,
        description="this `grace run` process's name among those sharing GRACE_DB",
    )
    replica_ttl_s: float = Field(
        30.0,
        ge=3,
        le=3600,
        description="a replica silent this long is dead; each beats every third of it",
    )
    weekly_report: ReportSchedule | None = Field(
        None, description="where and when the weekly report is posted; none without it"
    )
    admins: list[str] = Field(default_factory=list)
    targets: dict[str, list[str]] = Field(default_factory=dict)
    playbook_dirs: list[Path] = Field(default_factory=list)
    resilience: dict[str, Policy] = Field(
        default_factory=dict, description="per executor: retries, deadline, breaker, rate"
    )

    @field_validator("alert_channels", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("targets", "resilience")
    @classmethod
    def _known_executors(cls, value: dict[str, Any]) -> dict[str, Any]:
        # A misspelt executor would otherwise leave its allowlist or policy silently unused.
        executors = specs()
        unknown = sorted(set(value) - set(executors))
        if unknown:
            known = ", ".join(sorted(executors))
            raise ValueError(f"unknown executor {', '.join(map(repr, unknown))} (known: {known})")
        return value

    @field_validator("db", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        # A Path given in code is a file path; the field holds text so a URL stays whole.
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("replica")
    @classmethod
    def _replica_name(cls, value: str) -> str:
        if not REPLICA_NAME.fullmatch(value):
            raise ValueError(
                f"replica name {value!r} must be 1 to 64 characters of A-Z, a-z, 0-9, '.',"
                " '_' and '-' (it defaults to the host name: set GRACE_REPLICA)"
            )
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        config = os.environ.get(CONFIG_ENV)
        if config:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config))
        return tuple(sources)

    @property
    def fallback_channel(self) -> str | None:
        """Where webhook alerts go when no route matches."""
        return self.default_channel or next(iter(self.alert_channels), None)

    @property
    def snapshots(self) -> Path:
        if self.snapshot_dir is not None:
            return self.snapshot_dir
        if "://" in self.db:  # a server's URL: no database folder to sit beside
            return Path("grace-snapshots").resolve()
        return Path(self.db).resolve().parent / "grace-snapshots"

    @property
    def approval_policy(self) -> ApprovalPolicy:
        return ApprovalPolicy(
            {2: frozenset(self.approvers.tier2), 3: frozenset(self.approvers.tier3)}
        )

    def require(self, *names: str, why: str) -> None:
        """Refuse to go on without settings a command cannot work without."""
        names_of = _env_names(type(self))
        missing = [names_of.get(n, n) for n in names if getattr(self, n) in (None, "", [])]
        if missing:
            raise ConfigError(f"{', '.join(missing)} must be set {why}.")


def settings_class() -> type[CoreSettings]:
    """The settings class: GRACE's own fields, every webhook source's
    (`sentry_client_secret`, `sns_topics`, …) and every executor's (`services`,
    `aws_region`, …), so a plugin brings its settings with it and a misspelt key
    is still refused. Built for the plugins registered now: one registered
    later (a test's) brings its keys to the next configuration read."""
    configs = {plugin.config for plugin in webhook_plugins().values()}
    configs |= {plugin.config for plugin in executor_plugins().values()}
    return _with_configs(CoreSettings, frozenset(configs))


@functools.cache
def _with_configs(
    core: type[CoreSettings], configs: frozenset[type[BaseModel]]
) -> type[CoreSettings]:
    bases = sorted(configs, key=lambda model: f"{model.__module__}.{model.__qualname__}")
    # GRACE's config comes last, so no source's model config loosens it.
    namespace = {"__module__": __name__, "__doc__": core.__doc__, "model_config": core.model_config}
    return type("Settings", (core, *bases), namespace)


if TYPE_CHECKING:
    Settings = CoreSettings
else:
    Settings = settings_class()


def _env_names(settings: type[BaseModel]) -> dict[str, str]:
    return {
        name: str(field.validation_alias or f"GRACE_{name.upper()}")
        for name, field in settings.model_fields.items()
    }


def load_settings(**overrides: Any) -> Settings:
    """Read the configuration, turning validation errors into one clear ConfigError."""
    config = os.environ.get(CONFIG_ENV)
    if config and not Path(config).is_file():
        raise ConfigError(f"{CONFIG_ENV}={config}: no such file")
    try:
        return settings_class()(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config)) from None
    except Exception as exc:  # a YAML syntax error surfaces from the source itself
        raise ConfigError(f"{config}: {exc}") from None


def _describe(exc: ValidationError, config: str | None) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        top = str(error["loc"][0]) if error["loc"] else ""
        env_name = _env_names(settings_class()).get(top) or (top if top.isupper() else None)
        where = env_name if env_name and env_name in os.environ else None
        if where is None:
            where = f"{config}: {field}" if config else field
        lines.append(f"{where}: {error['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
