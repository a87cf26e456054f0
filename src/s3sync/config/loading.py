"""Settings: built-in defaults < TOML file < legacy env names < ``S3SYNC_*`` env < CLI flags.

This is the only module that reads ``os.environ`` for our own settings (AWS
credentials stay with the AWS credential chain). Settings are frozen once
loaded; every component receives the slice it needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from s3sync.config.sections import (
    ApiSettings,
    HooksSettings,
    InventorySettings,
    LogSettings,
    NoDecode,
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


def _legacy_env() -> dict[str, Any]:
    """The earlier FastAPI service's environment names, mapped onto sections."""
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


def _endpoint_env() -> dict[str, Any]:
    """Honour AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL like the AWS SDKs."""
    env = _environ.get() or dict(os.environ)
    out: dict[str, dict[str, Any]] = {}
    s3 = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    sqs = env.get("AWS_ENDPOINT_URL_SQS") or env.get("AWS_ENDPOINT_URL")
    if s3:
        out["s3"] = {"endpoint_url": s3}
    if sqs:
        out["sqs"] = {"endpoint_url": sqs}
    return out


class Settings(BaseModel):
    """All of s3sync's configuration, one frozen object.

    Built from every source on construction (:func:`_from_sources`), as pydantic-settings'
    ``BaseSettings`` did; ``model_validate`` validates what it is given and reads no source.
    The sources are the project's own because importing pydantic-settings (every source
    provider it ships, python-dotenv, zoneinfo) cost a one-shot ``s3sync sync`` about 0.04 CPU
    s of its ~0.35 s start-up (docs/benchmarks.md, round 3b); they do what its sources did
    for these sections, which tests/unit/test_config.py pins.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_default=True,
        arbitrary_types_allowed=True,
    )

    s3: S3Settings = S3Settings()
    sync: SyncSettings = SyncSettings()
    api: ApiSettings = ApiSettings()
    sqs: SqsSettings = SqsSettings()
    log: LogSettings = LogSettings()
    inventory: InventorySettings = InventorySettings()
    hooks: HooksSettings = HooksSettings()

    def __init__(self, **values: Any) -> None:
        super().__init__(**_from_sources(values))

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


#: ``S3SYNC_<SECTION>`` (a whole section as JSON) and ``S3SYNC_<SECTION>__<KEY>``, any case.
_ENV_PREFIX = "s3sync_"
_ENV_NESTED = "__"


def _from_sources(init: dict[str, Any]) -> dict[str, Any]:
    """Flags (``init``) > ``S3SYNC_*`` env > legacy env names > TOML file > ``AWS_ENDPOINT_URL*``.

    Each source gives ``{"section": {"key": value}}``; a higher one wins key by key. The file
    is read first, the environment then, in the order pydantic-settings used, so a
    configuration with several faults reports the same one first.
    """
    path = _config_file.get()
    file_data: dict[str, Any] | None = None
    if path is not None:
        import tomllib  # only when a file is given

        with path.open("rb") as fh:
            file_data = _by_section_name(tomllib.load(fh))
    sources = [_by_section_name(init), _s3sync_env(os.environ), _legacy_env()]
    if file_data is not None:
        sources.append(file_data)
    sources.append(_endpoint_env())
    state: dict[str, Any] = {}
    for source in sources:
        state = _deep_merge(source, state)
    return state


def _by_section_name(data: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level names match sections case-insensitively (``[S3]`` is ``[s3]``); the first wins.

    Anything else is kept as given, for validation to refuse as an unknown setting.
    """
    out: dict[str, Any] = {}
    rest = dict(data)
    for name in Settings.model_fields:
        keys = [k for k in data if k.lower() == name]
        if keys:
            out[name] = data[keys[0]]
            for k in keys:
                rest.pop(k, None)
    out.update(rest)
    return out


def _s3sync_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``S3SYNC_<SECTION>`` (JSON) deep-merged under ``S3SYNC_<SECTION>__<KEY>``, names in any case.

    A key whose type is a list is JSON unless marked :class:`NoDecode`; a value that does not
    decode is refused naming the section, in pydantic-settings' words.
    """
    env = {k.lower(): v for k, v in environ.items()}
    data: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        section = field.annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        value: Any = env.get(_ENV_PREFIX + name)
        try:
            if value is None:
                value = _nested_env(name, section, env) or None
            else:
                value = json.loads(value)
                if isinstance(value, dict):
                    value = _deep_merge(value, _nested_env(name, section, env))
        except ValueError as exc:
            raise ValueError(
                f'error parsing value for field "{name}" from source "EnvSettingsSource"'
            ) from exc
        if value is not None:
            data[name] = _key_names(section, value) if isinstance(value, dict) else value
    return data


def _nested_env(name: str, section: type[BaseModel], env: Mapping[str, str]) -> dict[str, Any]:
    prefix = _ENV_PREFIX + name + _ENV_NESTED
    result: dict[str, Any] = {}
    for env_name, env_val in env.items():
        if not env_name.startswith(prefix):
            continue
        *keys, last = env_name[len(prefix) :].split(_ENV_NESTED)
        target: Any = result
        for key in keys:  # deeper than a key: no section has a table inside, validation refuses it
            if isinstance(target, dict):
                target = target.setdefault(key, {})
        field = (
            None if keys else next((f for k, f in section.model_fields.items() if k.lower() == last), None)
        )
        value: Any = env_val
        if field is not None and env_val and _decodes_json(field):
            value = json.loads(env_val)
        if isinstance(target, dict):
            target[last] = value
    return result


def _decodes_json(field: FieldInfo) -> bool:
    """A list, tuple, set, mapping, model or dataclass is written as JSON, unless marked NoDecode."""
    if NoDecode in field.metadata:
        return False
    ann = field.annotation
    if get_origin(ann) in (list, tuple, set, frozenset, dict):
        return True
    return isinstance(ann, type) and (issubclass(ann, BaseModel) or dataclasses.is_dataclass(ann))


def _key_names(cls: type[Any], values: dict[str, Any]) -> dict[str, Any]:
    """Keys of a JSON object matched to ``cls``'s field names case-insensitively, into nested ones."""
    if issubclass(cls, BaseModel):
        fields: dict[str, Any] = {k: f.annotation for k, f in cls.model_fields.items()}
    elif dataclasses.is_dataclass(cls):
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
    else:
        return values
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = next((k for k in fields if k.lower() == name.lower()), None)
        if key is None:
            out[name] = value
            continue
        sub = fields[key]
        nested = isinstance(sub, type) and (issubclass(sub, BaseModel) or dataclasses.is_dataclass(sub))
        out[key] = _key_names(sub, value) if nested and isinstance(value, dict) else value
    return out


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
