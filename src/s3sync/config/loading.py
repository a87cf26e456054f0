"""Settings: built-in defaults < TOML file < legacy env names < ``S3SYNC_*`` env < CLI flags.

This is the only module that reads ``os.environ`` for our own settings (AWS
credentials stay with the AWS credential chain). Settings are frozen once
loaded; every component receives the slice it needs.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from s3sync.config.sections import (
    ApiSettings,
    HooksSettings,
    InventorySettings,
    LogSettings,
    S3Settings,
    SqsSettings,
    SyncSettings,
)
from s3sync.errors import ConfigError

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
    inventory: InventorySettings = InventorySettings()
    hooks: HooksSettings = HooksSettings()

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
        data["s3"]["endpoint_url"] = redact_url(data["s3"].get("endpoint_url"))
        data["hooks"]["url"] = redact_url(data["hooks"].get("url")) or ""
        return data


def redact_url(url: str | None) -> str | None:
    """``http://user:secret@host`` → ``http://user:**redacted**@host`` (a password in a URL is a secret)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:**redacted**@{host}"))


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
        inp = err.get("input")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
            var = "S3SYNC_" + "__".join(str(p).upper() for p in err["loc"])
            if any(k.upper() == var for k in os.environ):  # say where it came from
                msg += f" (from the environment variable {var})"
                inp = None
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        plain = isinstance(inp, dict) or inp is None or err["type"] == "missing"
        shown = "" if plain or repr(inp) in msg else f" (got {inp!r})"  # no "got 'x' (got 'x')"
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


__all__ = [
    "LEGACY_ENV",
    "ApiSettings",
    "InventorySettings",
    "LogSettings",
    "S3Settings",
    "Settings",
    "SqsSettings",
    "SyncSettings",
    "check_serving",
    "check_syncing",
    "format_validation_error",
    "load_settings",
]
