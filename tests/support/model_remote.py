"""S3 out of the test's process for the model test: moto and a gated fault proxy in one subprocess.

Why a subprocess: the model test audits every descriptor of its process around each
example, sockets included. An in-process moto server and proxy open and keep sockets,
pipes and selectors on threads of their own at any moment, so the audit had to leave
sockets out; with both in another process every socket left in the test's process
is the product's (or the test's own boto3 client, closed before the audit).

The subprocess runs a moto server, the test kit's proxy in front of it
(support.proxy: fault rules) with *gates* plugged in first, and a small JSON
control endpoint; :class:`RemoteS3` starts it and drives it. A gate holds the
requests that match it (an operation and a key, or any key),
either before they reach moto (``stage="request"``) or after moto answered, before the
answer goes back (``stage="response"``: a listing *taken* now, delivered later), until
the test releases them, one by one or all, each as it is or as an S3 error status.
Gates time interleavings by events, never by sleeps.

Run as a script it serves and prints its three URLs as one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import os
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parent.parent


@dataclass
class Gate:
    """Requests held by the proxy until released (see the module docstring)."""

    gid: int
    op: str
    key: str | None  # exact key, or None for any
    stage: str  # "request": before moto is asked; "response": moto answered, the answer held
    times: int | None = None  # how many requests it catches at most (None: until opened)
    caught: int = 0  # requests that entered the gate
    released: int = 0
    sent: int = 0  # exchanges ended after the release (answered, or the client went away)
    held: deque[asyncio.Future[tuple[int, str] | None]] = field(default_factory=deque)
    open: bool = False

    def matches(self, op: str, key: str) -> bool:
        if self.open or (self.times is not None and self.caught >= self.times):
            return False
        if self.op != op and not (self.op == "GET" and op == "RANGE"):
            return False
        return self.key is None or self.key == key


def _make_proxy(upstream: str) -> Any:
    """The test kit's proxy with :class:`Gates` plugged in first (imported here: the subprocess's path)."""
    if str(_TESTS) not in sys.path:
        sys.path.insert(0, str(_TESTS))
    from aiohttp import web
    from support.proxy import Behaviour, Call, Proxy, s3_error_xml

    class Gates(Behaviour):
        """Holds requests that match a :class:`Gate` until released (see the module docstring)."""

        def __init__(self) -> None:
            self.gates: dict[int, Gate] = {}
            self.ids = itertools.count(1)
            self.lock = threading.Lock()
            self.loop: asyncio.AbstractEventLoop | None = None

        # -- control (any thread) -------------------------------------------
        def gate(
            self, op: str, key: str | None = None, stage: str = "request", times: int | None = None
        ) -> int:
            g = Gate(next(self.ids), op, key, stage, times)
            with self.lock:
                self.gates[g.gid] = g
            return g.gid

        def gate_state(self, gid: int) -> dict[str, int]:
            with self.lock:
                g = self.gates[gid]
                return {"caught": g.caught, "held": len(g.held), "released": g.released, "sent": g.sent}

        def release(self, gid: int, n: int = 1, status: int = 0, code: str = "") -> int:
            """Let ``n`` held requests go (oldest first), as they are or answered with ``status``."""
            out = 0
            with self.lock:
                g = self.gates[gid]
                while g.held and out < n:
                    fut = g.held.popleft()
                    g.released += 1
                    out += 1
                    assert self.loop is not None
                    self.loop.call_soon_threadsafe(_settle, fut, (status, code) if status else None)
            return out

        def open_gate(self, gid: int) -> None:
            """Release everything held and let later requests pass."""
            with self.lock:
                self.gates[gid].open = True
            self.release(gid, n=1 << 30)

        def drop(self) -> None:
            for gid in list(self.gates):
                self.open_gate(gid)
            with self.lock:
                self.gates.clear()

        # -- the hooks (the proxy's loop) -------------------------------------
        def _catch(self, call: Call, stage: str) -> Gate | None:
            with self.lock:
                for g in self.gates.values():
                    if g.stage == stage and g.matches(call.seen.op, call.seen.key):
                        g.caught += 1
                        call.state["gate"] = g
                        return g
            return None

        async def _wait(self, gate: Gate) -> tuple[int, str] | None:
            self.loop = asyncio.get_running_loop()
            fut: asyncio.Future[tuple[int, str] | None] = self.loop.create_future()
            with self.lock:
                if gate.open:
                    return None
                gate.held.append(fut)
            return await fut

        async def before(self, call: Call) -> web.StreamResponse | None:
            gate = self._catch(call, "request")
            if gate is None:
                return None
            fault = await self._wait(gate)
            return _error(call.request, fault) if fault else None

        async def after(self, call: Call, up: Any) -> web.StreamResponse | None:
            gate = self._catch(call, "response")
            if gate is None:
                return None
            data = await up.read()  # moto's whole answer, taken now
            fault = await self._wait(gate)
            if fault:
                return _error(call.request, fault)
            out = {k: v for k, v in call.out.items() if k.lower() != "content-length"}
            return web.Response(status=call.status, body=data, headers=out)

    def _error(request: web.Request, fault: tuple[int, str]) -> web.Response:
        status, code = fault
        xml = s3_error_xml(code or "InjectedByGate", f"injected by the model test's gate ({status})")
        return web.Response(
            status=status,
            body=b"" if request.method == "HEAD" else xml,
            headers={"Content-Type": "application/xml", "x-amz-request-id": "gate"},
        )

    class GatedProxy(Proxy):  # type: ignore[misc]
        """The proxy, counting each gated request's answer as sent (or its client gone) at its end."""

        async def _exchange(self, call: Call) -> web.StreamResponse:
            try:
                return await super()._exchange(call)
            finally:
                gate = call.state.get("gate")
                if gate is not None:
                    with gates.lock:
                        gate.sent += 1

    gates = Gates()
    proxy = GatedProxy(upstream, gates)
    proxy.gates = gates
    return proxy


def _settle(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def serve() -> None:
    """The subprocess: moto, the gated proxy, the control endpoint; one JSON line of URLs on stdout."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    proxy = _make_proxy(f"http://{host}:{port}")
    proxy.start()

    gates = proxy.gates
    calls: dict[str, Any] = {
        "add": lambda **kw: (proxy.faults.add(kw.pop("action"), **kw), None)[1],
        "clear": lambda: [proxy.faults.clear(), gates.drop()][:0] or None,
        "count": proxy.count,
        "reset_counters": proxy.reset_counters,
        "gate": gates.gate,
        "gate_state": gates.gate_state,
        "release": gates.release,
        "open_gate": gates.open_gate,
    }

    class Control(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                result = {"ok": calls[req["method"]](**req.get("args", {}))}
            except Exception as exc:  # reported to the test, which raises it
                result = {"error": repr(exc)}
            body = json.dumps(result).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    urls = {
        "moto": f"http://{host}:{port}",
        "proxy": proxy.url,
        "control": f"127.0.0.1:{control.server_address[1]}",
    }
    print(json.dumps(urls), flush=True)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the test closes our stdin (or dies)
    control.shutdown()
    with contextlib.suppress(Exception):
        proxy.stop()
    moto.stop()


class RemoteS3:
    """The test's side: starts the subprocess, and drives its proxy and gates over the control endpoint.

    Each call is one short HTTP exchange on a connection closed at once, so the
    control leaves no descriptor behind in the test's process.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # moto's access lines
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError("the S3 subprocess of the model test did not start")
        urls = json.loads(line)
        self.moto, self.url, self.control = urls["moto"], urls["proxy"], urls["control"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.close()
            self.proc.stdout.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def call(self, method: str, **args: Any) -> Any:
        host, port = self.control.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("POST", "/", body=json.dumps({"method": method, "args": args}))
            out = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        if "error" in out:
            raise RuntimeError(f"S3 subprocess: {method}: {out['error']}")
        return out["ok"]

    # the fault proxy's own control, as FaultProxy spells it
    def add(self, action: str, **kw: Any) -> None:
        self.call("add", action=action, **kw)

    def clear(self) -> None:
        """No fault rule, no gate (what was held goes on)."""
        self.call("clear")

    def count(self, op: str, key: str | None = None) -> int:
        return int(self.call("count", op=op, key=key))

    # gates
    def gate(self, op: str, key: str | None = None, stage: str = "request", times: int | None = None) -> int:
        return int(self.call("gate", op=op, key=key, stage=stage, times=times))

    def gate_state(self, gid: int) -> dict[str, int]:
        return dict(self.call("gate_state", gid=gid))

    def release(self, gid: int, n: int = 1, status: int = 0, code: str = "") -> int:
        return int(self.call("release", gid=gid, n=n, status=status, code=code))

    def open_gate(self, gid: int) -> None:
        self.call("open_gate", gid=gid)


if __name__ == "__main__":
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    serve()
