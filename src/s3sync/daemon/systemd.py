"""A tiny ``sd_notify(3)`` client: READY, STATUS, STOPPING and WATCHDOG pings.

Why not a dependency: the protocol is one datagram per message on the socket
named by ``NOTIFY_SOCKET``, and writing it here keeps the daemon free of a
package that would only wrap ``socket.sendto``. Everything is a no-op when the
process was not started by systemd (``NOTIFY_SOCKET`` unset), so callers never
need to check.

Notification is best effort by design: a failure to talk to systemd must never
take the service down, so :meth:`Notifier.notify` logs at debug and returns.
If the failure is persistent and the unit has ``WatchdogSec=``, systemd itself
will notice the missing pings and restart us, which is the right outcome.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier", "watchdog_loop"]

_log = logging.getLogger(__name__)


class Notifier:
    """One connection to systemd's notification socket (or none at all)."""

    def __init__(self, address: str | None = None, watchdog_interval: float | None = None) -> None:
        self._address = _socket_address(address) if address else None
        self._sock: socket.socket | None = None
        self.enabled: bool = self._address is not None
        self.watchdog_interval: float | None = watchdog_interval

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Build from ``NOTIFY_SOCKET`` / ``WATCHDOG_USEC`` / ``WATCHDOG_PID``.

        The watchdog interval is half of ``WATCHDOG_USEC`` (what ``sd_watchdog_enabled``
        recommends) so a single late ping does not get us killed. ``WATCHDOG_PID``,
        when present, must be our pid: a child that inherited the environment must
        not ping on its parent's behalf.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        return cls(address, _watchdog_interval(env))

    def notify(self, **fields: str) -> None:
        """Send ``KEY=value`` lines in one datagram; never raise."""
        if self._address is None or not fields:
            return
        payload = "\n".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            # EAGAIN on a full socket buffer, ENOENT/ECONNREFUSED if systemd went away:
            # none of these is a reason to disturb the service.
            _log.debug("sd_notify %r failed: %s", payload, exc)

    def ready(self, status: str | None = None) -> None:
        """Tell systemd start-up is complete (``Type=notify`` waits for this)."""
        fields = {"READY": "1"}
        if status is not None:
            fields["STATUS"] = status
        self.notify(**fields)

    def status(self, text: str) -> None:
        """One line shown by ``systemctl status``."""
        self.notify(STATUS=text)

    def stopping(self, status: str | None = None) -> None:
        """Tell systemd we are draining, so it does not mistake shutdown for a hang."""
        fields = {"STOPPING": "1"}
        if status is not None:
            fields["STATUS"] = status
        self.notify(**fields)

    def watchdog(self) -> None:
        """Prove liveness; systemd restarts the unit when these stop for ``WatchdogSec``."""
        self.notify(WATCHDOG="1")

    def close(self) -> None:
        """Release the socket; later calls reopen it lazily."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


async def watchdog_loop(notifier: Notifier) -> None:
    """Ping the watchdog every ``watchdog_interval`` seconds until cancelled.

    It deliberately runs *on the event loop* rather than in a thread: if the
    loop is blocked or wedged the pings stop, and systemd restarts a daemon
    that has stopped serving — which is what the watchdog is for.
    """
    interval = notifier.watchdog_interval
    if not notifier.enabled or interval is None or interval <= 0:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


def _socket_address(address: str) -> str | bytes:
    """An ``@name`` is Linux's abstract namespace: a leading NUL byte on the wire."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8")
    return address


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000
