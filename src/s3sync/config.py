"""Settings: built-in defaults < TOML file < legacy env names < ``S3SYNC_*`` env < CLI flags.

This is the only module that reads ``os.environ`` for our own settings (AWS
credentials stay with the AWS credential chain). Settings are frozen once
loaded; every component receives the slice it needs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from s3sync.errors import ConfigError

_section = ConfigDict(extra="forbid", frozen=True)


class S3Settings(BaseModel):
    """Where the bucket lives."""

    model_config = _section

    bucket: str = ""
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    max_pool_connections: int = Field(default=128, ge=1, le=4096)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    fast_get: bool = True

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, v: str) -> str:
        if v and not re.fullmatch(r"[a-z0-9][a-z0-9.\-_]{1,254}", v):
            raise ValueError(f"{v!r} is not a valid S3 bucket name")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        assert v is not None
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")


class SyncSettings(BaseModel):
    """How the mirror is kept."""

    model_config = _section

    local_dir: Path = Path("downloaded_files")
    state_path: Path | None = None
    interval_seconds: float = Field(default=3600.0, gt=0)
    periodic: bool = True
    delete: bool = False
    max_delete: int | str = -1
    concurrency: int = Field(default=32, ge=1, le=1024)
    max_file_size_mb: float = Field(default=1000.0, ge=0)
    # NoDecode: an env value reaches _globs as a plain string (comma list or JSON list)
    # instead of failing pydantic-settings' JSON decoding with a message naming no key.
    include: Annotated[tuple[str, ...], NoDecode] = ()
    exclude: Annotated[tuple[str, ...], NoDecode] = ()
    verify_integrity: bool = True
    skip_existing: bool = True
    checksum: bool = False
    download_timeout_seconds: float = Field(default=300.0, gt=0)
    retry_attempts: int = Field(default=3, ge=0, le=100)
    multipart_threshold_mb: float = Field(default=64.0, gt=0)
    part_size_mb: float = Field(default=16.0, ge=5)
    fsync: bool = True
    drain_timeout_seconds: float = Field(default=30.0, ge=0)
    journal_high_water: int = Field(default=100_000, ge=1)

    @field_validator("max_delete")
    @classmethod
    def _max_delete(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v < -1:
                raise ValueError("must be -1 (no limit), a count >= 0, or a percentage like '10%'")
            return v
        text = v.strip()
        if re.fullmatch(r"-?\d+", text):
            return cls._max_delete(int(text))
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
        if not m or float(m.group(1)) > 100:
            raise ValueError("must be -1 (no limit), a count >= 0, or a percentage like '10%'")
        return f"{m.group(1)}%"

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _globs(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v.strip().startswith("["):
                return json.loads(v)
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    def delete_limit(self, tracked: int) -> int | None:
        """How many deletions one reconcile may make, or None for no limit."""
        if isinstance(self.max_delete, int):
            return None if self.max_delete < 0 else self.max_delete
        pct = float(self.max_delete.rstrip("%"))
        return int(tracked * pct / 100.0)

    @property
    def resolved_state_path(self) -> Path:
        return self.state_path or (self.local_dir / ".s3sync" / "state.db")

    @property
    def max_file_size_bytes(self) -> int | None:
        return None if self.max_file_size_mb == 0 else int(self.max_file_size_mb * 1024 * 1024)


class ApiSettings(BaseModel):
    """The HTTP API."""

    model_config = _section

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8888, ge=0, le=65535)
    token: SecretStr | None = None
    notification_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=8190, ge=1024)
    auth_failures_per_minute: int = Field(default=20, ge=1)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("token", "notification_secret", mode="before")
    @classmethod
    def _empty_secret(cls, v: Any) -> Any:
        return None if v in ("", None) else v

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        return self

    @property
    def is_loopback(self) -> bool:
        if self.host in ("localhost", "localhost.localdomain"):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class SqsSettings(BaseModel):
    """Optional SQS consumer."""

    model_config = _section

    queue_url: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    visibility_timeout_seconds: int = Field(default=60, ge=1, le=43200)
    max_messages: int = Field(default=10, ge=1, le=10)

    @field_validator("endpoint_url", mode="before")
    @classmethod
    def _empty_url(cls, v: Any) -> Any:
        return None if v == "" else v


class LogSettings(BaseModel):
    """Logging."""

    model_config = _section

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"
    file: Path | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("file", mode="before")
    @classmethod
    def _empty_file(cls, v: Any) -> Any:
        return None if v == "" else v


_config_file: ContextVar[Path | None] = ContextVar("s3sync_config_file", default=None)
_environ: ContextVar[dict[str, str] | None] = ContextVar("s3sync_environ", default=None)


def _truthy(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes", "on")


# legacy name -> (section, key, converter)
LEGACY_ENV: dict[str, tuple[str, str, Any]] = {
    "S3_BUCKET_NAME": ("s3", "bucket", str),
    "AWS_REGION": ("s3", "region", str),
    "LOCAL_DOWNLOAD_DIR": ("sync", "local_dir", str),
    "SYNC_INTERVAL_HOURS": ("sync", "interval_seconds", lambda v: float(v) * 3600.0),
    "ENABLE_PERIODIC_SYNC": ("sync", "periodic", str),
    "MAX_FILE_SIZE_MB": ("sync", "max_file_size_mb", str),
    "API_HOST": ("api", "host", str),
    "API_PORT": ("api", "port", str),
    "LOG_LEVEL": ("log", "level", str),
    "LOG_FILE": ("log", "file", str),
    "SKIP_EXISTING_FILES": ("sync", "skip_existing", str),
    "VERIFY_FILE_INTEGRITY": ("sync", "verify_integrity", str),
    "DOWNLOAD_TIMEOUT_SECONDS": ("sync", "download_timeout_seconds", str),
    "RETRY_ATTEMPTS": ("sync", "retry_attempts", str),
}


class _LegacyEnvSource(PydanticBaseSettingsSource):
    """The earlier FastAPI service's environment names, mapped onto sections."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = _environ.get() or dict(os.environ)
        out: dict[str, dict[str, Any]] = {}
        for name, (section, key, conv) in LEGACY_ENV.items():
            if name in env and env[name] != "":
                try:
                    value = conv(env[name])
                except ValueError as exc:
                    raise ConfigError(f"{name} (legacy for {section}.{key}): {exc}") from exc
                out.setdefault(section, {})[key] = value
        return out


class _EndpointEnvSource(PydanticBaseSettingsSource):
    """Honour AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL like the AWS SDKs."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = _environ.get() or dict(os.environ)
        out: dict[str, dict[str, Any]] = {}
        s3 = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        sqs = env.get("AWS_ENDPOINT_URL_SQS") or env.get("AWS_ENDPOINT_URL")
        if s3:
            out["s3"] = {"endpoint_url": s3}
        if sqs:
            out["sqs"] = {"endpoint_url": sqs}
        return out


class Settings(BaseSettings):
    """All of s3sync's configuration, one frozen object."""

    model_config = SettingsConfigDict(
        env_prefix="S3SYNC_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    s3: S3Settings = S3Settings()
    sync: SyncSettings = SyncSettings()
    api: ApiSettings = ApiSettings()
    sqs: SqsSettings = SqsSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _LegacyEnvSource(settings_cls),
        ]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        sources.append(_EndpointEnvSource(settings_cls))
        return tuple(sources)

    def public_dict(self) -> dict[str, Any]:
        """The effective configuration with every secret redacted."""
        data = self.model_dump(mode="json")
        for key in ("token", "notification_secret"):
            if data["api"].get(key) is not None:
                data["api"][key] = "**redacted**"
        data["sync"]["state_path"] = str(self.sync.resolved_state_path)
        return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the dotted key and the reason."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        inp = err.get("input")
        shown = "" if isinstance(inp, dict) or err["type"] == "missing" else f" (got {inp!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the frozen settings; raise :class:`ConfigError` naming the bad key.

    ``overrides`` are CLI flags (highest precedence), as ``{"section": {"key": v}}``.
    ``environ`` replaces ``os.environ`` (tests).
    """
    path: Path | None = None
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist or is not a file")
        try:
            import tomllib

            with path.open("rb") as fh:
                tomllib.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    tok_file = _config_file.set(path)
    tok_env = _environ.set(environ)
    saved_env: dict[str, str] | None = None
    try:
        if environ is not None:
            # pydantic-settings' env source reads os.environ; swap it for the duration.
            saved_env = dict(os.environ)
            os.environ.clear()
            os.environ.update(environ)
        init = {k: v for k, v in (overrides or {}).items() if v}
        try:
            settings = _with_overrides(init) if init else Settings()
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc)) from None
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None
    finally:
        if saved_env is not None:
            os.environ.clear()
            os.environ.update(saved_env)
        _config_file.reset(tok_file)
        _environ.reset(tok_env)
    return settings


def _with_overrides(init: dict[str, dict[str, Any]]) -> Settings:
    """Apply CLI flags on top of every other source, field by field."""
    base = Settings()
    merged = _deep_merge(base.model_dump(), init)
    return Settings.model_validate(merged)


def check_serving(settings: Settings) -> None:
    """Refuse configurations that are valid but unsafe or unusable for ``serve``."""
    if not settings.s3.bucket:
        raise ConfigError(
            "s3.bucket: required (set it in the config file, S3SYNC_S3__BUCKET or S3_BUCKET_NAME)"
        )
    if settings.api.enabled and not settings.api.is_loopback and settings.api.token is None:
        raise ConfigError(
            f"api.host: refusing to listen on non-loopback address {settings.api.host!r} "
            "without api.token set (set S3SYNC_API__TOKEN, or bind to 127.0.0.1)"
        )


def check_syncing(settings: Settings) -> None:
    """What a one-shot ``sync`` / ``verify`` needs."""
    if not settings.s3.bucket:
        raise ConfigError(
            "s3.bucket: required (use --bucket, the config file, S3SYNC_S3__BUCKET or S3_BUCKET_NAME)"
        )
