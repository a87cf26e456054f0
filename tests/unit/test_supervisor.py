"""The daemon's supervisor: one cleanup context per resource, started and unwound with the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from s3sync.api import keys as K
from s3sync.config import load_settings
from s3sync.daemon.app import create_app
from s3sync.daemon.supervisor import Supervisor


def _settings(tmp_path: Path) -> object:
    # nothing listens on port 9 of loopback: the engine opens (it needs no answer to start)
    # and health reports S3 unreachable, which is all these tests need
    return load_settings(
        overrides={
            "s3": {"bucket": "supervisor-test", "region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
            "sync": {"local_dir": str(tmp_path / "mirror"), "periodic": False},
        },
        environ={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
    )


class TestSupervisor:
    """Resources are declared in dependency order and unwound in reverse by aiohttp."""

    def test_one_cleanup_context_per_resource_in_dependency_order(self, tmp_path: Path) -> None:
        app = create_app(_settings(tmp_path))  # type: ignore[arg-type]
        sup = app[K.SERVICES]
        assert isinstance(sup, Supervisor)
        names = [getattr(ctx, "__name__", "") for ctx in app.cleanup_ctx]
        assert names == [
            "_http_ctx",
            "_hooks_ctx",
            "_engine_ctx",
            "_tasks_ctx",
            "_scheduler_ctx",
            "_sqs_ctx",
            "_runner_ctx",
        ]

    async def test_the_engine_opens_with_the_app_and_closes_with_it(self, tmp_path: Path) -> None:
        app = create_app(_settings(tmp_path))  # type: ignore[arg-type]
        sup = app[K.SERVICES]
        app.freeze()
        await app.startup()
        try:
            assert sup.engine_ready()
        finally:
            await app.shutdown()
            await app.cleanup()
        assert not sup.engine_ready()

    async def test_a_failed_start_unwinds_what_had_started(self, tmp_path: Path) -> None:
        """A resource whose start fails after the engine opened: the engine is closed all the same."""
        app = create_app(_settings(tmp_path))  # type: ignore[arg-type]
        sup = app[K.SERVICES]

        async def broken(_app: web.Application):  # type: ignore[no-untyped-def]
            raise RuntimeError("a later resource cannot start")
            yield  # pragma: no cover

        app.cleanup_ctx.append(broken)
        app.freeze()
        with pytest.raises(RuntimeError, match="a later resource cannot start"):
            await app.startup()
        assert sup.engine_ready()  # started before the broken context
        await app.cleanup()
        assert not sup.engine_ready()
