"""Change hooks end to end: a real hook program and a real HTTP receiver, the real app, moto.

The hook program appends every document it is given to a file and fails (exit
3) while a marker file exists; the receiver answers 500 while told to. Both
must see every change exactly as applied (key, op, ETag, size), in per-key
order, the failing one after retries, while the sync itself is unaffected —
and after a SIGKILL of ``s3sync serve`` between the apply and the hook, the
restarted daemon re-delivers from its outbox.

What each test may assert follows the contract (docs/freshness.md): in a run
without a crash every change is delivered exactly once; after a crash, at least
once (duplicates allowed, losses not). The waits are hang guards only (generous,
never a judgement of the machine's speed); a test with several of them gets a
pytest timeout to match.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from support.daemon import Daemon, MakeDaemon, free_port, notify, run_daemon, serve_toml
from support.eventkit import s3_event, s3_record
from support.proxy import Proxy
from support.s3kit import tree
from support.wait import wait_for

#: The hang guard of every wait here; a test (several waits, restarts) gets the pytest timeout below.
WITHIN = 120
pytestmark = pytest.mark.timeout(600)

HOOK = """\
import pathlib, sys
here = pathlib.Path(sys.argv[1])
doc = sys.stdin.read()
if (here / "fail").exists():
    sys.stderr.write("told to fail\\n")
    sys.exit(3)
with open(here / "calls.jsonl", "a") as out:
    out.write(doc.replace("\\n", " ") + "\\n")
"""


def _hook(tmp_path: Path) -> list[str]:
    (tmp_path / "hook.py").write_text(HOOK)
    return [sys.executable, str(tmp_path / "hook.py"), str(tmp_path)]


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    f = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def _changes(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for d in docs for c in d["changes"]]


def _etag(s3: Any, bucket: str, key: str) -> str:
    return str(s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


async def _start(daemon: Daemon) -> None:
    await asyncio.to_thread(daemon.start)  # answers /ping


async def _notify(daemon: Daemon, payload: Any) -> dict[str, Any]:
    return await notify(daemon, payload, within=WITHIN)


async def _sigkill(daemon: Daemon) -> int:
    return await asyncio.to_thread(daemon.kill)


async def _sigterm(daemon: Daemon) -> int:
    return await asyncio.to_thread(daemon.terminate)


class TestHookCommand:
    async def test_every_change_as_applied_in_key_order_and_retried(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, tmp_path: Path
    ) -> None:
        (tmp_path / "fail").touch()  # the hook fails until told otherwise
        settings = make_settings(bucket, mirror, hooks={"command": _hook(tmp_path), "batch_ms": 50})
        async with run_daemon(settings) as d:
            s3.put_object(Bucket=bucket, Key="a.txt", Body=b"one")
            s3.put_object(Bucket=bucket, Key="dir/b c.txt", Body=b"bravo")
            await d.notify(
                s3_event(*(s3_record(bucket, "ObjectCreated:Put", k) for k in ("a.txt", "dir/b c.txt")))
            )
            await d.idle(within=WITHIN)
            etag1 = _etag(s3, bucket, "a.txt")
            etag_b = _etag(s3, bucket, "dir/b c.txt")
            s3.put_object(Bucket=bucket, Key="a.txt", Body=b"two!")
            await d.notify(s3_event(s3_record(bucket, "ObjectCreated:Put", "a.txt")))
            await d.idle(within=WITHIN)
            etag2 = _etag(s3, bucket, "a.txt")
            s3.delete_object(Bucket=bucket, Key="dir/b c.txt")
            await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:Delete", "dir/b c.txt")))
            st = await d.idle(within=WITHIN)
            # the sync went on while the hook failed
            assert tree(mirror) == {"a.txt": b"two!"}
            assert st["freshness"]["pending"] == 0

            async def failing() -> dict[str, Any] | None:
                hooks = (await d.stats())["hooks"]
                return hooks if hooks["calls"]["failed"] >= 2 and hooks["pending"] == 4 else None

            hooks = await wait_for(failing, within=WITHIN, what="hook failures counted")
            assert "exit status 3" in hooks["last_error"]
            assert _calls(tmp_path) == []
            async with d.http.get(f"{d.url}/metrics") as resp:
                metrics = await resp.text()
            assert 's3sync_hook_calls_total{outcome="failed"}' in metrics
            assert "s3sync_hook_pending 4.0" in metrics

            (tmp_path / "fail").unlink()
            await wait_for(lambda: len(_changes(_calls(tmp_path))) >= 4, within=WITHIN, what="hook delivered")
            stats = await wait_for(lambda: _settled(d), within=WITHIN, what="outbox empty")
            assert stats["hooks"]["calls"]["success"] >= 1
            changes = _changes(_calls(tmp_path))
            assert len(changes) == 4  # no crash: each change exactly once
            assert {c["source"] for c in changes} == {"notification"}
            per_key: dict[str, list[tuple[str, str, Any, Any]]] = {}
            for c in changes:
                per_key.setdefault(c["key"], []).append((c["path"], c["op"], c["etag"], c["size"]))
            # each key's changes in the order they were applied, exactly as applied
            assert per_key["a.txt"] == [("a.txt", "upsert", etag1, 3), ("a.txt", "upsert", etag2, 4)]
            assert per_key["dir/b c.txt"] == [
                ("dir/b c.txt", "upsert", etag_b, 5),
                ("dir/b c.txt", "remove", None, None),
            ]
            doc = _calls(tmp_path)[0]
            assert set(doc) == {"changes", "events_applied_through", "reconciled_through"}


async def _settled(d: Any) -> dict[str, Any] | None:
    st: dict[str, Any] = await d.stats()
    return st if st["hooks"]["pending"] == 0 else None


class TestHookUrl:
    async def test_signed_posts_retried_until_2xx(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, tmp_path: Path
    ) -> None:
        from s3sync.api.auth import hmac_problem

        received: list[tuple[dict[str, str], bytes]] = []
        failures = {"left": 3}

        async def receive(request: web.Request) -> web.Response:
            body = await request.read()
            if failures["left"] > 0:
                failures["left"] -= 1
                return web.Response(status=500)
            received.append((dict(request.headers), body))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        secret = tmp_path / "hook.secret"
        secret.write_text("s3cr3t-for-hooks\n")
        try:
            settings = make_settings(bucket, mirror, hooks={"url": url, "secret_file": str(secret)})
            async with run_daemon(settings) as d:
                keys = [f"u/{i}.bin" for i in range(12)]
                for i, k in enumerate(keys):
                    s3.put_object(Bucket=bucket, Key=k, Body=b"x" * i)
                await d.notify(s3_event(*(s3_record(bucket, "ObjectCreated:Put", k) for k in keys)))
                await d.idle(within=WITHIN)
                await wait_for(
                    lambda: sum(len(json.loads(b)["changes"]) for _, b in received) >= len(keys),
                    within=WITHIN,
                    what="URL hook delivered",
                )
                st = await wait_for(lambda: _settled(d), within=WITHIN, what="outbox empty")
                assert st["hooks"]["calls"]["failed"] >= 3
        finally:
            await runner.cleanup()
        delivered = [c for _, b in received for c in json.loads(b)["changes"]]
        assert sorted(c["key"] for c in delivered) == sorted(keys)  # no crash: each exactly once
        got = {c["key"]: c for c in delivered}
        for i, k in enumerate(keys):
            assert (got[k]["op"], got[k]["size"], got[k]["etag"]) == ("upsert", i, _etag(s3, bucket, k))
        for headers, body in received:
            assert headers["Content-Type"] == "application/json"
            # verified exactly as the daemon verifies the Lambda forwarder's requests
            problem = hmac_problem(
                SecretStr("s3cr3t-for-hooks"),
                headers.get("X-S3Sync-Timestamp"),
                headers.get("X-S3Sync-Signature"),
                body,
            )
            assert problem is None, problem


class TestHookAfterSigkill:
    async def test_applied_but_unacknowledged_changes_are_redelivered(
        self,
        s3: Any,
        bucket: str,
        mirror: Path,
        tmp_path: Path,
        moto_endpoint: str,
        config_daemon: MakeDaemon,
    ) -> None:
        (tmp_path / "fail").touch()
        objects = {"k1.txt": b"one", "k2.txt": b"two", "sub/k3.txt": b"three"}
        for k, v in objects.items():
            s3.put_object(Bucket=bucket, Key=k, Body=v)
        port = free_port()
        config = tmp_path / "s3sync.toml"
        config.write_text(
            serve_toml(bucket, moto_endpoint, mirror, port)
            + f"[hooks]\ncommand = {json.dumps(_hook(tmp_path))}\nbatch_ms = 20\n"
            '[log]\nformat = "json"\n'
        )
        async with aiohttp.ClientSession() as http:
            daemon = config_daemon(config, port, tmp_path / "serve.log")
            await _start(daemon)
            await _notify(daemon, s3_event(*(s3_record(bucket, "ObjectCreated:Put", k) for k in objects)))

            async def applied_not_told() -> bool:
                async with http.get(f"{daemon.url}/api/v1/stats") as resp:
                    st = await resp.json()
                return bool(
                    st["freshness"]["pending"] == 0
                    and st["hooks"]["pending"] == 3
                    and st["hooks"]["calls"]["failed"] >= 1
                )

            await wait_for(applied_not_told, within=WITHIN, what="applied, hook failing")
            assert tree(mirror) == objects

            def journal_empty() -> bool:  # settled on disk too: only the outbox can re-deliver now
                db = sqlite3.connect(mirror / ".s3sync" / "state.db")
                try:
                    return int(db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]) == 0
                finally:
                    db.close()

            await wait_for(journal_empty, within=WITHIN, what="journal rows removed on disk")
            assert await _sigkill(daemon) == -signal.SIGKILL
            db = sqlite3.connect(mirror / ".s3sync" / "state.db")
            try:
                kept = sorted(json.loads(r[0])["key"] for r in db.execute("SELECT doc FROM outbox"))
            finally:
                db.close()
            assert kept == sorted(objects)  # durable in the outbox when the process died
            (tmp_path / "fail").unlink()
            await _start(daemon)
            await wait_for(
                lambda: len(_changes(_calls(tmp_path))) >= 3, within=WITHIN, what="re-delivered after restart"
            )

            async def acknowledged() -> bool:
                async with http.get(f"{daemon.url}/api/v1/stats") as resp:
                    return bool((await resp.json())["hooks"]["pending"] == 0)

            await wait_for(acknowledged, within=WITHIN, what="outbox empty after restart")
            changes = _changes(_calls(tmp_path))
            # exactly once here, not merely at least once: no call succeeded before the crash (the
            # hook failed), and the delivery from the outbox after it ran without one
            assert sorted(c["key"] for c in changes) == sorted(objects)
            assert {c["key"]: c["size"] for c in changes} == {k: len(v) for k, v in objects.items()}
            assert await _sigterm(daemon) == 0


class TestHookReconcileChangeAfterSigkill:
    async def test_killed_between_the_rename_and_the_outbox_commit_it_is_still_reported(
        self,
        s3: Any,
        bucket: str,
        mirror: Path,
        tmp_path: Path,
        moto_endpoint: str,
        config_daemon: MakeDaemon,
    ) -> None:
        """A pass's change is in no journal, so nothing would replay it. The daemon is killed
        (SIGKILL) after the file was renamed into place and before the change's outbox
        commit — held back by a write lock the test takes on the state database while the
        GET is held at the proxy. The restarted daemon reports it anyway: from the
        provisional outbox row committed before the apply began."""
        s3.put_object(Bucket=bucket, Key="r.txt", Body=b"reconciled")
        etag = _etag(s3, bucket, "r.txt")
        state_db = mirror / ".s3sync" / "state.db"
        port = free_port()
        config = tmp_path / "s3sync.toml"
        with Proxy(moto_endpoint) as proxy:
            gate = proxy.faults.hold("GET", key_re=r"^r\.txt$")
            config.write_text(
                serve_toml(bucket, proxy.url, mirror, port)
                + f"[hooks]\ncommand = {json.dumps(_hook(tmp_path))}\nbatch_ms = 20\n"
                '[log]\nformat = "json"\n'
            )
            async with aiohttp.ClientSession() as http:
                daemon = config_daemon(config, port, tmp_path / "serve.log")
                await _start(daemon)
                async with http.post(f"{daemon.url}/api/v1/sync?background=true") as resp:
                    assert resp.status == 202, await resp.text()
                await wait_for(lambda: proxy.count("GET", "r.txt") >= 1, within=WITHIN, what="the GET held")
                lock = sqlite3.connect(state_db, isolation_level=None, timeout=WITHIN)
                lock.execute("BEGIN IMMEDIATE")  # the daemon's next commit waits behind the test
                try:
                    gate.set()
                    await wait_for(
                        lambda: (mirror / "r.txt").exists(), within=WITHIN, what="file renamed into place"
                    )
                    assert await _sigkill(daemon) == -signal.SIGKILL
                finally:
                    lock.execute("ROLLBACK")
                    lock.close()
                assert (mirror / "r.txt").read_bytes() == b"reconciled"
                assert _calls(tmp_path) == []
                await _start(daemon)
                await wait_for(
                    lambda: len(_changes(_calls(tmp_path))) >= 1, within=WITHIN, what="reported after restart"
                )
                assert await _sigterm(daemon) == 0
        changes = _changes(_calls(tmp_path))
        assert [(c["key"], c["path"], c["op"], c["etag"], c["size"]) for c in changes] == [
            ("r.txt", "r.txt", "upsert", etag, 10)
        ]


class TestHookIgnoringItsInput:
    async def test_a_command_that_never_reads_stdin_is_acknowledged(
        self,
        s3: Any,
        bucket: str,
        mirror: Path,
        tmp_path: Path,
        moto_endpoint: str,
        config_daemon: MakeDaemon,
    ) -> None:
        """``true`` exits without reading the document: still a success (exit 0), in the real
        ``s3sync serve`` (uvloop), where writing the document into a pipe the command had
        closed failed every call, forever."""
        keys = [f"t{i}.txt" for i in range(20)]
        for k in keys:
            s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
        port = free_port()
        config = tmp_path / "s3sync.toml"
        config.write_text(
            serve_toml(bucket, moto_endpoint, mirror, port) + '[hooks]\ncommand = ["true"]\nbatch_ms = 0\n'
        )
        async with aiohttp.ClientSession() as http:
            daemon = config_daemon(config, port, tmp_path / "serve.log")
            await _start(daemon)
            try:
                for k in keys:  # one by one: many calls, each one a chance to lose the race
                    await _notify(daemon, s3_event(s3_record(bucket, "ObjectCreated:Put", k)))

                async def settled() -> dict[str, Any] | None:
                    async with http.get(f"{daemon.url}/api/v1/stats") as resp:
                        st: dict[str, Any] = await resp.json()
                    done = st["freshness"]["pending"] == 0 and st["hooks"]["pending"] == 0
                    return st["hooks"] if done or st["hooks"]["last_error"] else None

                hooks = await wait_for(settled, within=WITHIN, what="every change applied and acknowledged")
            finally:
                assert await _sigterm(daemon) == 0
        assert tree(mirror) == {k: k.encode() for k in keys}
        assert hooks["last_error"] is None and hooks["calls"]["failed"] == 0
        assert hooks["pending"] == 0 and hooks["calls"]["success"] >= 1


class TestHookMissingProgram:
    async def test_a_program_that_cannot_run_is_a_retried_failure(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = make_settings(
            bucket, mirror, hooks={"command": [str(tmp_path / "no-such-program")], "batch_ms": 0}
        )
        async with run_daemon(settings) as d:
            s3.put_object(Bucket=bucket, Key="m.txt", Body=b"m")
            report = await d.reconcile()
            assert report["downloaded"] == 1
            assert tree(mirror) == {"m.txt": b"m"}  # the sync is not held up by the hook

            async def retried() -> dict[str, Any] | None:
                hooks: dict[str, Any] = (await d.stats())["hooks"]
                return hooks if hooks["calls"]["failed"] >= 2 else None

            hooks = await wait_for(retried, within=WITHIN, what="the failing call retried")
            assert hooks["pending"] == 1 and hooks["calls"]["success"] == 0
            assert "cannot run" in hooks["last_error"] and "no-such-program" in hooks["last_error"]


class TestHookReplayedUnchanged:
    async def test_a_replayed_change_found_applied_is_still_reported(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, tmp_path: Path
    ) -> None:
        """The crash window between the rename and the outbox commit: the journal still holds the
        change, the file and its state row are there. The replay finds it unchanged (304) and the
        hook is told anyway — what the mirror holds now."""
        s3.put_object(Bucket=bucket, Key="w.txt", Body=b"written")
        s3.put_object(Bucket=bucket, Key="gone.txt", Body=b"bye")
        async with run_daemon(make_settings(bucket, mirror)) as d:  # no hooks yet
            await d.reconcile()
        s3.delete_object(Bucket=bucket, Key="gone.txt")
        (mirror / "gone.txt").unlink()  # removed, as the crashed apply had done
        db = sqlite3.connect(mirror / ".s3sync" / "state.db")
        try:
            db.execute("DELETE FROM objects WHERE key = 'gone.txt'")
            for key, kind in (("w.txt", "upsert"), ("gone.txt", "remove")):
                db.execute(
                    "INSERT INTO journal (key, kind, source, received_at) VALUES (?, ?, 'notification', 1.0)",
                    (key, kind),
                )
            db.commit()
        finally:
            db.close()
        settings = make_settings(bucket, mirror, hooks={"command": _hook(tmp_path), "batch_ms": 0})
        async with run_daemon(settings) as d:
            await wait_for(
                lambda: len(_changes(_calls(tmp_path))) >= 2, within=WITHIN, what="replayed reported"
            )
            st = await d.idle(within=WITHIN)
            await wait_for(lambda: _settled(d), within=WITHIN, what="outbox empty")
            assert st["files_synced"] == 0  # nothing was downloaded again
        changes = {c["key"]: c for c in _changes(_calls(tmp_path))}
        assert changes["w.txt"]["op"] == "upsert" and changes["w.txt"]["size"] == 7
        assert changes["w.txt"]["etag"] == _etag(s3, bucket, "w.txt")
        assert changes["gone.txt"]["op"] == "remove"
        assert len(_changes(_calls(tmp_path))) == 2
