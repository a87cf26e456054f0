"""load_settings: sources, precedence, legacy names, validation messages, safety checks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from s3sync.config import (
    LEGACY_ENV,
    Settings,
    check_serving,
    check_syncing,
    load_settings,
)
from s3sync.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(**kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    return str(info.value)


class TestDefaults:
    """With no file, no environment and no flags, the built-in defaults apply."""

    def test_defaults(self) -> None:
        s = load_settings(environ={})
        assert s.s3.bucket == ""
        assert s.s3.region == "us-east-1"
        assert s.api.host == "127.0.0.1"
        assert s.api.port == 8888
        assert s.api.token is None
        assert s.sync.interval_seconds == 3600.0
        assert s.sync.local_dir == Path("downloaded_files")
        assert s.sync.resolved_state_path == Path("downloaded_files/.s3sync/state.db")
        assert s.sqs.queue_url == ""
        assert s.log.level == "INFO"

    def test_frozen(self) -> None:
        s = load_settings(environ={})
        with pytest.raises(ValidationError):
            s.sync.concurrency = 5  # type: ignore[misc]

    def test_environ_replaces_os_environ(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("S3SYNC_S3__BUCKET", "from-os-environ")
        monkeypatch.setenv("S3_BUCKET_NAME", "legacy-os-environ")
        assert load_settings(environ={}).s3.bucket == ""
        # ... and os.environ is restored afterwards.
        assert os.environ["S3SYNC_S3__BUCKET"] == "from-os-environ"
        assert load_settings().s3.bucket == "from-os-environ"


class TestConfigFile:
    """The TOML file sets values; a bad file is refused with a clear reason."""

    def test_values_from_file(self, tmp_path: Path) -> None:
        path = _write(
            tmp_path,
            '[s3]\nbucket = "file-bucket"\nprefix = "data/"\n'
            '[sync]\nconcurrency = 9\nlocal_dir = "/srv/mirror"\ninclude = ["*.csv"]\n'
            '[api]\nport = 9000\n[log]\nlevel = "debug"\n',
        )
        s = load_settings(path, environ={})
        assert s.s3.bucket == "file-bucket"
        assert s.s3.prefix == "data/"
        assert s.sync.concurrency == 9
        assert s.sync.local_dir == Path("/srv/mirror")
        assert s.sync.include == ("*.csv",)
        assert s.api.port == 9000
        assert s.log.level == "DEBUG"

    def test_missing_file(self, tmp_path: Path) -> None:
        msg = _error(config_file=tmp_path / "nope.toml", environ={})
        assert "nope.toml" in msg and "does not exist" in msg

    def test_directory_is_not_a_file(self, tmp_path: Path) -> None:
        assert "not a file" in _error(config_file=tmp_path, environ={})

    def test_invalid_toml(self, tmp_path: Path) -> None:
        msg = _error(config_file=_write(tmp_path, "[sync\nconcurrency = 3\n"), environ={})
        assert "not valid TOML" in msg
        assert "line 1" in msg

    def test_unknown_key(self, tmp_path: Path) -> None:
        msg = _error(config_file=_write(tmp_path, "[sync]\nconcurency = 3\n"), environ={})
        assert "sync.concurency" in msg and "unknown setting" in msg

    def test_unknown_section(self, tmp_path: Path) -> None:
        msg = _error(config_file=_write(tmp_path, "[bogus]\nx = 1\n"), environ={})
        assert "bogus" in msg and "unknown setting" in msg

    def test_wrong_type_names_key(self, tmp_path: Path) -> None:
        msg = _error(config_file=_write(tmp_path, '[api]\nport = "high"\n'), environ={})
        assert "api.port" in msg


class TestEnvironment:
    """S3SYNC_<SECTION>__<KEY> variables override the file."""

    def test_env_overrides_file(self, tmp_path: Path) -> None:
        path = _write(tmp_path, '[s3]\nbucket = "file-bucket"\nregion = "eu-west-2"\n')
        s = load_settings(path, environ={"S3SYNC_S3__BUCKET": "env-bucket"})
        assert s.s3.bucket == "env-bucket"
        assert s.s3.region == "eu-west-2"  # untouched keys keep the file's value

    def test_names_are_case_insensitive(self) -> None:
        assert load_settings(environ={"s3sync_s3__bucket": "lower"}).s3.bucket == "lower"

    @pytest.mark.parametrize(("raw", "expected"), [("true", True), ("0", False), ("no", False)])
    def test_booleans(self, raw: str, expected: bool) -> None:
        assert load_settings(environ={"S3SYNC_SYNC__DELETE": raw}).sync.delete is expected

    def test_empty_optional_is_unset(self) -> None:
        s = load_settings(environ={"S3SYNC_API__TOKEN": "", "S3SYNC_LOG__FILE": ""})
        assert s.api.token is None
        assert s.log.file is None

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("*.csv,*.json", ("*.csv", "*.json")),
            (" *.csv , logs/* ", ("*.csv", "logs/*")),
            ('["a,b", "c"]', ("a,b", "c")),
            ("", ()),
        ],
    )
    def test_glob_lists(self, raw: str, expected: tuple[str, ...]) -> None:
        s = load_settings(environ={"S3SYNC_SYNC__INCLUDE": raw, "S3SYNC_SYNC__EXCLUDE": raw})
        assert s.sync.include == expected
        assert s.sync.exclude == expected

    def test_bad_glob_json_names_key(self) -> None:
        assert "sync.exclude" in _error(environ={"S3SYNC_SYNC__EXCLUDE": "[oops"})

    def test_unknown_env_key(self) -> None:
        msg = _error(environ={"S3SYNC_SYNC__BOGUS": "1"})
        assert "sync.bogus" in msg and "unknown setting" in msg

    @pytest.mark.parametrize(
        ("environ", "dotted", "expected"),
        [
            # a whole section as JSON; its keys match case-insensitively; nested names win over it
            ({"S3SYNC_S3": '{"bucket": "json-bucket", "REGION": "eu-west-1"}'}, "s3.region", "eu-west-1"),
            (
                {"S3SYNC_S3": '{"bucket": "json-bucket", "prefix": "a"}', "S3SYNC_S3__PREFIX": "b"},
                "s3.prefix",
                "b",
            ),
            ({"S3SYNC_SYNC": '{"Include": "a,b"}'}, "sync.include", ("a", "b")),
            ({"S3SYNC_Sync__Delete": "true"}, "sync.delete", True),
            # a list-valued key without the glob parsing is JSON
            ({"S3SYNC_HOOKS__COMMAND": '["/bin/echo", "x"]'}, "hooks.command", ("/bin/echo", "x")),
            ({"S3SYNC_SYNC__SHARD": "1/4"}, "sync.shard.spec", "1/4"),
            ({"S3SYNC_SYNC__MAX_DELETE": "10%"}, "sync.max_delete", "10%"),
            ({"S3SYNC_SQS__WAIT_TIME_SECONDS": "5"}, "sqs.wait_time_seconds", 5),
            # a name that is no section is not ours to refuse
            ({"S3SYNC_BOGUS": "1"}, "s3.bucket", ""),
            # a key set as a value is not also a table
            ({"S3SYNC_SYNC__INCLUDE": "a", "S3SYNC_SYNC__INCLUDE__X": "b"}, "sync.include", ("a",)),
        ],
    )
    def test_environment_shapes(self, environ: dict[str, str], dotted: str, expected: Any) -> None:
        """What pydantic-settings' env source did, kept when the loader became the project's own."""
        value: Any = load_settings(environ=environ)
        for name in dotted.split("."):
            value = getattr(value, name)
        assert value == expected

    @pytest.mark.parametrize(
        ("environ", "message"),
        [
            ({"S3SYNC_S3": "not json"}, 'error parsing value for field "s3" from source "EnvSettingsSource"'),
            ({"S3SYNC_S3": ""}, 'error parsing value for field "s3" from source "EnvSettingsSource"'),
            (
                {"S3SYNC_HOOKS__COMMAND": "echo"},
                'error parsing value for field "hooks" from source "EnvSettingsSource"',
            ),
            ({"S3SYNC_HOOKS__COMMAND": ""}, "hooks.command: Input should be a valid tuple (got '')"),
            (
                {"S3SYNC_LOG": "1"},
                "log: Input should be a valid dictionary or instance of LogSettings (got 1)",
            ),
            ({"S3SYNC_S3__BUCKET__X": "1"}, "s3.bucket: Input should be a valid string"),
            ({"S3SYNC_SYNC__INCLUDE__X": "a"}, "sync.include: Input should be a valid tuple"),
        ],
    )
    def test_environment_errors(self, environ: dict[str, str], message: str) -> None:
        assert _error(environ=environ) == f"invalid configuration: {message}"

    def test_sources_merge_per_key(self, tmp_path: Path) -> None:
        """File < JSON section in the environment < flags, key by key; AWS_ENDPOINT_URL lowest."""
        path = _write(tmp_path, '[S3]\nbucket = "file-bucket"\nregion = "eu-west-2"\n')
        s = load_settings(
            path,
            overrides={"s3": {"bucket": "flag-bucket"}},
            environ={
                "S3SYNC_S3": '{"bucket": "env-bucket", "prefix": "jp"}',
                "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            },
        )
        assert (s.s3.bucket, s.s3.prefix, s.s3.region, s.s3.endpoint_url) == (
            "flag-bucket",
            "jp",
            "eu-west-2",
            "http://127.0.0.1:9",
        )

    def test_file_tables_match_case_insensitively_keys_do_not(self, tmp_path: Path) -> None:
        assert (
            load_settings(
                _write(tmp_path, '[s3]\nbucket = "xx"\n[S3]\nbucket = "yy"\n'), environ={}
            ).s3.bucket
            == "xx"
        )
        msg = _error(config_file=_write(tmp_path, '[s3]\nBUCKET = "xx"\n'), environ={})
        assert msg == "invalid configuration: s3.BUCKET: unknown setting (got 'xx')"

    @pytest.mark.parametrize(
        ("env", "s3", "sqs"),
        [
            ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}, "http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            (
                {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2/"},
                "http://127.0.0.1:2",
                "http://127.0.0.1:1",
            ),
            (
                {
                    "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:3",
                    "S3SYNC_S3__ENDPOINT_URL": "http://127.0.0.1:4",
                },
                "http://127.0.0.1:4",
                "http://127.0.0.1:3",
            ),
            (
                {"AWS_ENDPOINT_URL": "http://127.0.0.1:5", "S3SYNC_SQS__ENDPOINT_URL": "http://127.0.0.1:6"},
                "http://127.0.0.1:5",
                "http://127.0.0.1:6",
            ),
        ],
    )
    def test_aws_endpoint_variables(self, env: dict[str, str], s3: str, sqs: str) -> None:
        s = load_settings(environ=env)
        assert s.s3.endpoint_url == s3
        assert s.sqs.endpoint_url == sqs

    def test_file_endpoint_beats_aws_variable(self, tmp_path: Path) -> None:
        path = _write(tmp_path, '[s3]\nendpoint_url = "http://127.0.0.1:7"\n')
        s = load_settings(path, environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:8"})
        assert s.s3.endpoint_url == "http://127.0.0.1:7"


# legacy name -> (raw value, dotted key, parsed value)
LEGACY_CASES: dict[str, tuple[str, str, Any]] = {
    "S3_BUCKET_NAME": ("legacy-bucket", "s3.bucket", "legacy-bucket"),
    "AWS_REGION": ("eu-central-1", "s3.region", "eu-central-1"),
    "LOCAL_DOWNLOAD_DIR": ("/data/mirror", "sync.local_dir", Path("/data/mirror")),
    "SYNC_INTERVAL_HOURS": ("0.5", "sync.interval_seconds", 1800.0),
    "ENABLE_PERIODIC_SYNC": ("false", "sync.periodic", False),
    "MAX_FILE_SIZE_MB": ("250", "sync.max_file_size_mb", 250.0),
    "API_HOST": ("0.0.0.0", "api.host", "0.0.0.0"),
    "API_PORT": ("9999", "api.port", 9999),
    "LOG_LEVEL": ("debug", "log.level", "DEBUG"),
    "LOG_FILE": ("/var/log/s3sync/s3sync.log", "log.file", Path("/var/log/s3sync/s3sync.log")),
    "SKIP_EXISTING_FILES": ("false", "sync.skip_existing", False),
    "VERIFY_FILE_INTEGRITY": ("0", "sync.verify_integrity", False),
    "DOWNLOAD_TIMEOUT_SECONDS": ("42", "sync.download_timeout_seconds", 42.0),
    "RETRY_ATTEMPTS": ("7", "sync.retry_attempts", 7),
}


def _get(s: Settings, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(s, section), key)


class TestLegacyNames:
    """The earlier FastAPI service's environment names still configure s3sync."""

    def test_every_legacy_name_is_tested(self) -> None:
        assert set(LEGACY_CASES) == set(LEGACY_ENV)

    @pytest.mark.parametrize("name", sorted(LEGACY_CASES))
    def test_maps_to_key(self, name: str) -> None:
        raw, dotted, expected = LEGACY_CASES[name]
        section, key, _ = LEGACY_ENV[name]
        assert f"{section}.{key}" == dotted
        assert _get(load_settings(environ={name: raw}), dotted) == expected

    @pytest.mark.parametrize(
        ("hours", "seconds"), [("1", 3600.0), ("1.0", 3600.0), ("0.25", 900.0), ("24", 86400.0)]
    )
    def test_sync_interval_hours(self, hours: str, seconds: float) -> None:
        s = load_settings(environ={"SYNC_INTERVAL_HOURS": hours})
        assert s.sync.interval_seconds == seconds

    def test_legacy_overrides_file(self, tmp_path: Path) -> None:
        path = _write(tmp_path, '[s3]\nbucket = "file-bucket"\n')
        assert load_settings(path, environ={"S3_BUCKET_NAME": "legacy-bucket"}).s3.bucket == "legacy-bucket"

    def test_new_name_beats_legacy(self) -> None:
        s = load_settings(environ={"S3_BUCKET_NAME": "legacy-bucket", "S3SYNC_S3__BUCKET": "new-bucket"})
        assert s.s3.bucket == "new-bucket"

    def test_legacy_and_new_names_combine(self) -> None:
        s = load_settings(environ={"S3_BUCKET_NAME": "legacy-bucket", "S3SYNC_S3__REGION": "eu-west-1"})
        assert (s.s3.bucket, s.s3.region) == ("legacy-bucket", "eu-west-1")

    def test_empty_legacy_value_is_ignored(self) -> None:
        assert load_settings(environ={"S3_BUCKET_NAME": ""}).s3.bucket == ""

    def test_bad_hours_names_both(self) -> None:
        msg = _error(environ={"SYNC_INTERVAL_HOURS": "hourly"})
        assert "SYNC_INTERVAL_HOURS" in msg and "sync.interval_seconds" in msg

    def test_bad_legacy_value_names_key(self) -> None:
        assert "api.port" in _error(environ={"API_PORT": "eighty"})


class TestOverrides:
    """CLI flags (overrides) beat every other source, key by key."""

    def test_override_beats_env_and_file(self, tmp_path: Path) -> None:
        path = _write(tmp_path, '[s3]\nbucket = "file-bucket"\n[sync]\nconcurrency = 9\n')
        s = load_settings(
            path,
            overrides={"sync": {"concurrency": 5}},
            environ={"S3SYNC_SYNC__CONCURRENCY": "7", "S3SYNC_SYNC__DELETE": "true"},
        )
        assert s.sync.concurrency == 5
        assert s.sync.delete is True  # env value for another key survives
        assert s.s3.bucket == "file-bucket"  # file value for another section survives

    def test_override_keeps_secrets(self, tmp_path: Path) -> None:
        path = _write(tmp_path, '[api]\ntoken = "file-token"\n')
        s = load_settings(
            path,
            overrides={"s3": {"bucket": "cli-bucket"}},
            environ={"S3SYNC_API__NOTIFICATION_SECRET": "env-secret"},
        )
        assert s.api.token is not None and s.api.token.get_secret_value() == "file-token"
        assert s.api.notification_secret is not None
        assert s.api.notification_secret.get_secret_value() == "env-secret"

    def test_empty_override_section_is_ignored(self) -> None:
        assert load_settings(overrides={"sync": {}}, environ={}) == load_settings(environ={})

    def test_invalid_override_names_key(self) -> None:
        msg = _error(overrides={"sync": {"concurrency": 0}}, environ={})
        assert "sync.concurrency" in msg

    def test_unknown_override_key(self) -> None:
        assert "sync.nope" in _error(overrides={"sync": {"nope": 1}}, environ={})


class TestValidationMessages:
    """Each invalid value is refused with a message naming the dotted key."""

    @pytest.mark.parametrize(
        ("env", "dotted"),
        [
            ({"S3SYNC_SYNC__CONCURRENCY": "0"}, "sync.concurrency"),
            ({"S3SYNC_SYNC__CONCURRENCY": "many"}, "sync.concurrency"),
            ({"S3SYNC_API__PORT": "70000"}, "api.port"),
            ({"S3SYNC_S3__BUCKET": "Not_A_Bucket!"}, "s3.bucket"),
            ({"S3SYNC_S3__ENDPOINT_URL": "ftp://127.0.0.1"}, "s3.endpoint_url"),
            ({"S3SYNC_SYNC__MAX_DELETE": "150%"}, "sync.max_delete"),
            ({"S3SYNC_SYNC__MAX_DELETE": "-2"}, "sync.max_delete"),
            ({"S3SYNC_SYNC__MAX_DELETE": "lots"}, "sync.max_delete"),
            ({"S3SYNC_SYNC__INTERVAL_SECONDS": "0"}, "sync.interval_seconds"),
            ({"S3SYNC_SYNC__PART_SIZE_MB": "1"}, "sync.part_size_mb"),
            ({"S3SYNC_SQS__MAX_MESSAGES": "11"}, "sqs.max_messages"),
            ({"S3SYNC_LOG__LEVEL": "loud"}, "log.level"),
            ({"S3SYNC_LOG__FORMAT": "xml"}, "log.format"),
            ({"S3SYNC_API__TLS_CERT": "/etc/cert.pem"}, "api"),
        ],
    )
    def test_names_key(self, env: dict[str, str], dotted: str) -> None:
        msg = _error(environ=env)
        assert msg.startswith("invalid configuration: ")
        assert f"{dotted}:" in msg

    def test_all_problems_reported(self) -> None:
        msg = _error(environ={"S3SYNC_SYNC__CONCURRENCY": "0", "S3SYNC_API__PORT": "-1"})
        assert "sync.concurrency" in msg and "api.port" in msg

    @pytest.mark.parametrize(("raw", "expected"), [("10 %", "10%"), ("2.5%", "2.5%"), ("25", 25), ("-1", -1)])
    def test_max_delete_forms(self, raw: str, expected: int | str) -> None:
        assert load_settings(environ={"S3SYNC_SYNC__MAX_DELETE": raw}).sync.max_delete == expected

    @pytest.mark.parametrize(("raw", "tracked", "limit"), [("-1", 50, None), ("3", 50, 3), ("10%", 50, 5)])
    def test_delete_limit(self, raw: str, tracked: int, limit: int | None) -> None:
        from s3sync.sync.reconcile.deletes import delete_limit

        s = load_settings(environ={"S3SYNC_SYNC__MAX_DELETE": raw})
        assert delete_limit(s.sync.max_delete, tracked) == limit


class TestServingChecks:
    """check_serving refuses unsafe or incomplete daemon configurations."""

    def test_requires_bucket(self) -> None:
        with pytest.raises(ConfigError, match=r"s3\.bucket"):
            check_serving(load_settings(environ={}))
        with pytest.raises(ConfigError, match=r"s3\.bucket"):
            check_syncing(load_settings(environ={}))

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.internal"])
    def test_non_loopback_needs_token(self, host: str) -> None:
        s = load_settings(environ={"S3SYNC_S3__BUCKET": "bkt", "S3SYNC_API__HOST": host})
        with pytest.raises(ConfigError, match=r"api\.host.*api\.token"):
            check_serving(s)

    @pytest.mark.parametrize("host", ["0.0.0.0", "::"])
    def test_non_loopback_with_token(self, host: str) -> None:
        env = {"S3SYNC_S3__BUCKET": "bkt", "S3SYNC_API__HOST": host, "S3SYNC_API__TOKEN": "t0ken"}
        check_serving(load_settings(environ=env))

    def test_legacy_api_host_without_token_refused(self) -> None:
        # The old service defaulted API_HOST=0.0.0.0; carrying that over needs a token now.
        s = load_settings(environ={"S3_BUCKET_NAME": "bkt", "API_HOST": "0.0.0.0"})
        with pytest.raises(ConfigError, match=r"api\.host"):
            check_serving(s)

    @pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
    def test_loopback_needs_no_token(self, host: str) -> None:
        check_serving(load_settings(environ={"S3SYNC_S3__BUCKET": "bkt", "S3SYNC_API__HOST": host}))

    def test_api_disabled(self) -> None:
        env = {"S3SYNC_S3__BUCKET": "bkt", "S3SYNC_API__HOST": "0.0.0.0", "S3SYNC_API__ENABLED": "false"}
        check_serving(load_settings(environ=env))


class TestPublicDict:
    """public_dict is safe to show: secrets redacted, derived paths resolved."""

    def test_secrets_redacted(self) -> None:
        env = {"S3SYNC_API__TOKEN": "tok-SECRET-1", "S3SYNC_API__NOTIFICATION_SECRET": "hmac-SECRET-2"}
        data = load_settings(environ=env).public_dict()
        assert data["api"]["token"] == "**redacted**"
        assert data["api"]["notification_secret"] == "**redacted**"
        text = json.dumps(data)
        assert "SECRET" not in text

    def test_unset_secrets_stay_null(self) -> None:
        data = load_settings(environ={}).public_dict()
        assert data["api"]["token"] is None
        assert data["api"]["notification_secret"] is None

    def test_json_ready_and_state_path_resolved(self) -> None:
        data = load_settings(environ={"S3SYNC_SYNC__LOCAL_DIR": "/srv/m"}).public_dict()
        assert json.loads(json.dumps(data)) == data
        assert data["sync"]["state_path"] == "/srv/m/.s3sync/state.db"
        assert data["sync"]["local_dir"] == "/srv/m"
