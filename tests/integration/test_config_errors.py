"""Bad configuration is refused at start: exit 2, a message naming the key, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.s3kit import CliResult, CliRunner, seed, tree


def _refused(res: CliResult, *names: str) -> None:
    assert res.returncode == 2, res
    assert "Traceback" not in res.output, res
    assert any(n in res.stderr for n in names), (names, res)


class TestConfigFile:
    """Problems in the TOML file are reported with the file or key at fault."""

    def test_bad_toml(self, cli: CliRunner, bucket: str, mirror: Path, tmp_path: Path) -> None:
        """Unparseable TOML exits 2 and says which file."""
        cfg = tmp_path / "broken.toml"
        cfg.write_text("[sync\nconcurrency = = 3\n", encoding="utf-8")
        _refused(cli.sync(bucket, mirror, "--config", str(cfg)), "broken.toml", "TOML")
        assert tree(mirror) == {}

    def test_missing_file(self, cli: CliRunner, bucket: str, mirror: Path, tmp_path: Path) -> None:
        """A --config path that does not exist exits 2."""
        _refused(
            cli.sync(bucket, mirror, "--config", str(tmp_path / "nope.toml")), "nope.toml"
        )

    def test_unknown_key(self, cli: CliRunner, bucket: str, mirror: Path, tmp_path: Path) -> None:
        """A misspelt key is not silently ignored."""
        cfg = tmp_path / "typo.toml"
        cfg.write_text("[sync]\nconcurency = 4\n", encoding="utf-8")
        _refused(cli.sync(bucket, mirror, "--config", str(cfg)), "sync.concurency")

    def test_unknown_section(
        self, cli: CliRunner, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """An unknown section is refused too."""
        cfg = tmp_path / "section.toml"
        cfg.write_text("[synk]\nconcurrency = 4\n", encoding="utf-8")
        _refused(cli.sync(bucket, mirror, "--config", str(cfg)), "synk")

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("[sync]\nconcurrency = 0\n", "sync.concurrency"),
            ("[sync]\nmax_delete = \"lots\"\n", "sync.max_delete"),
            ("[api]\nport = 70000\n", "api.port"),
            ("[s3]\nendpoint_url = \"ftp://x\"\n", "s3.endpoint_url"),
        ],
        ids=["concurrency", "max_delete", "port", "endpoint_url"],
    )
    def test_invalid_value(
        self, cli: CliRunner, bucket: str, mirror: Path, tmp_path: Path, text: str, key: str
    ) -> None:
        """An out-of-range or malformed value names its dotted key."""
        cfg = tmp_path / "bad.toml"
        cfg.write_text(text, encoding="utf-8")
        res = cli(
            "sync", "--config", str(cfg), "--bucket", bucket, "--dest", str(mirror),
            *(() if "endpoint_url" in key else ("--endpoint-url", cli.endpoint)),
        )
        _refused(res, key)


class TestEnvAndFlags:
    """Environment variables and flags are validated like the file."""

    def test_env_override_invalid(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        """S3SYNC_SYNC__CONCURRENCY=0 is refused, naming sync.concurrency."""
        res = cli.sync(bucket, mirror, env={"S3SYNC_SYNC__CONCURRENCY": "0"})
        _refused(res, "sync.concurrency")

    def test_env_overrides_file(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """An env var wins over a bad file value (and the sync then works)."""
        seed(s3, bucket, {"k": b"v"})
        cfg = tmp_path / "c.toml"
        cfg.write_text("[sync]\nconcurrency = 0\n", encoding="utf-8")
        res = cli.sync(bucket, mirror, "--config", str(cfg), env={"S3SYNC_SYNC__CONCURRENCY": "2"})
        assert res.returncode == 0, res
        assert tree(mirror) == {"k": b"v"}

    def test_flag_invalid(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        """--concurrency 0 exits 2 (bad usage), not 1."""
        _refused(cli.sync(bucket, mirror, "--concurrency", "0"), "concurrency")

    def test_unknown_flag(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        """An unknown option is bad usage."""
        res = cli.sync(bucket, mirror, "--no-such-flag")
        assert res.returncode == 2, res
        assert "Traceback" not in res.output

    def test_missing_bucket(self, cli: CliRunner, mirror: Path) -> None:
        """Without any bucket configured, sync refuses and names s3.bucket."""
        res = cli("sync", "--endpoint-url", cli.endpoint, "--dest", str(mirror))
        _refused(res, "s3.bucket", "bucket")


class TestServeRefusals:
    """``serve`` refuses to expose an unauthenticated API on the network."""

    def test_non_loopback_without_token(
        self, cli: CliRunner, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """api.host=0.0.0.0 with no api.token exits 2 before listening."""
        cfg = tmp_path / "serve.toml"
        cfg.write_text(
            f'[s3]\nbucket = "{bucket}"\nendpoint_url = "{cli.endpoint}"\n'
            f'[sync]\nlocal_dir = "{mirror}"\nperiodic = false\n'
            '[api]\nhost = "0.0.0.0"\nport = 0\n',
            encoding="utf-8",
        )
        res = cli("serve", "--config", str(cfg), timeout=30)
        _refused(res, "api.host", "api.token")

    def test_non_loopback_via_env(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        """The same refusal when the host comes from S3SYNC_API__HOST."""
        env = {
            "S3SYNC_S3__BUCKET": bucket,
            "S3SYNC_S3__ENDPOINT_URL": cli.endpoint,
            "S3SYNC_SYNC__LOCAL_DIR": str(mirror),
            "S3SYNC_SYNC__PERIODIC": "false",
            "S3SYNC_API__HOST": "0.0.0.0",
            "S3SYNC_API__PORT": "0",
        }
        res = cli("serve", env=env, timeout=30)
        _refused(res, "api.host", "api.token")
