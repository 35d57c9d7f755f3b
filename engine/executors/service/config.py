"""What the operator configured for each service under `services:`, and where
its health answers over TCP."""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


class ServiceConfig(BaseModel):
    """One service under `services:` in GRACE's config. Trusted: the operator wrote it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    health_url: AnyHttpUrl | None = None
    health_tcp: str | None = Field(default=None, description='"host:port" or "[v6]:port"')
    config_file: Path | None = None
    log_level_key: str = Field(
        default="log_level", pattern=_KEY, description="dotted (logging.level) in YAML and JSON"
    )
    admin_url: AnyHttpUrl | None = Field(
        default=None, description='GET returns {"level": ...}; PUT {"level": ...} sets it'
    )
    reload_url: AnyHttpUrl | None = Field(
        default=None, description="POST asks the service to re-read its config file"
    )

    @field_validator("health_tcp")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            _split_host_port(value)
        return value

    @field_validator("health_url", "admin_url", "reload_url")
    @classmethod
    def _no_credentials(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        # URLs are shown in Slack threads; a password in one would be shown too.
        if value is not None and (value.username or value.password):
            raise ValueError("credentials in URLs are not supported: GRACE shows URLs in Slack")
        return value

    @field_validator("config_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("config_file must be an absolute path")
        return value

    @model_validator(mode="after")
    def _has_a_health_check(self) -> ServiceConfig:
        if self.health_url is None and self.health_tcp is None:
            raise ValueError("a service needs health_url or health_tcp (or both)")
        return self


class ServicesConfig(BaseModel):
    """The service executor's slice of GRACE's config."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    services: dict[str, ServiceConfig] = Field(
        default_factory=dict, description="what the service executor knows of each service"
    )


def tcp_address(config: ServiceConfig) -> tuple[str, int]:
    """health_tcp, else the host and port of health_url (one of them is always set)."""
    if config.health_tcp is not None:
        return _split_host_port(config.health_tcp)
    assert config.health_url is not None and config.health_url.host is not None
    host = config.health_url.host.strip("[]")
    return host, config.health_url.port or (443 if config.health_url.scheme == "https" else 80)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into its parts, or ValueError."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return host, int(port)
