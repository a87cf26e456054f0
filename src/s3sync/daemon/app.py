"""The daemon's composition root: the supervisor, the web app serving it, wired once.

:func:`create_app` builds the :class:`~s3sync.stats.SyncStats`, the
:class:`~s3sync.daemon.supervisor.Supervisor` that owns the engine and everything
around it, and the web app (:func:`s3sync.api.app.build_app`) that serves its
handles; the supervisor installs one cleanup context per resource, so the app's
start starts them and its cleanup stops them in reverse. Kept apart from ``serve``
(the process around the app) so tests and the demo build the same app.
"""

from __future__ import annotations

from aiohttp import web

from s3sync.api.app import build_app
from s3sync.config import Settings
from s3sync.daemon.supervisor import Supervisor
from s3sync.daemon.systemd import Notifier
from s3sync.stats import SyncStats


def create_app(settings: Settings, *, notifier: Notifier | None = None) -> web.Application:
    """Build the aiohttp application; the supervisor's resources start with it and stop with it."""
    stats = SyncStats()
    supervisor = Supervisor(settings, stats, notifier)
    app = build_app(settings, supervisor, stats)
    supervisor.install(app)
    return app


__all__ = ["create_app"]
