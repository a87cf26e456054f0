"""Hostile input: schemathesis against the served OpenAPI, hypothesis on keys and event payloads.

``S3SYNC_FUZZ_EXAMPLES`` sets the examples per API operation (default 25).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.daemon import Daemon

EXAMPLES = int(os.environ.get("S3SYNC_FUZZ_EXAMPLES", "25"))
# What "conforms" means here. Not positive_data_acceptance: the notification body is documented
# as any JSON object (the parser takes four envelope kinds) and a shape it cannot use is a
# documented 400 — a loose request schema, not a broken response.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]




def _bound_waits(case: Any) -> None:
    """A generated ``/wait`` that would block waits at most 1 s (its default is 30 s).

    Schemathesis reads each answer for 10 s; a wait that is still waiting is correct, not a
    hang. A generated ``timeout`` that is not a number stays as generated (its 400 is checked).
    """
    if not case.formatted_path.endswith("/wait"):
        return
    query = case.query if isinstance(case.query, dict) else {}
    try:
        too_long = float(query.get("timeout", 30)) > 1
    except (TypeError, ValueError):
        too_long = False
    if too_long:
        query["timeout"] = "1"
        case.query = query


def test_api_never_5xx_and_conforms(fuzz_daemon: Daemon) -> None:
    """Every generated request to every documented operation: no 5xx, no stack trace, and the
    status, content type, headers and body match the OpenAPI document the daemon serves."""
    schema = schemathesis.openapi.from_url(fuzz_daemon.url + "/api/v1/openapi.json")
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case: Any) -> None:
            nonlocal tried
            tried += 1
            _bound_waits(case)
            response = case.call()
            # the one documented 5xx: a wait that ran out of time (docs/freshness.md, 504 wait_timeout)
            wait_timeout = (response.status_code == 504 and case.formatted_path.endswith("/wait")
                            and '"wait_timeout"' in response.text)
            if (response.status_code >= 500 and not wait_timeout) or "Traceback" in response.text:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                                f"{response.text[:200]}")
                return
            try:
                checks = [c for c in CHECKS if c is not schemathesis.checks.not_a_server_error] \
                    if wait_timeout else CHECKS
                case.validate_response(response, checks=checks)
            except Exception as exc:  # collect them all, report at the end
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}"[:600])

        check()
    print(f"FUZZ requests={tried} failures={len(failures)}")
    assert not failures, "\n".join(sorted(set(failures))[:20])


class TestKeyMapper:
    """KeyMapper.to_path on arbitrary keys: a path inside the root, or UnsafeKeyError — nothing else."""

    @settings(max_examples=2000, deadline=None)
    @given(st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(["..", ".", "", "a", "/", "\x00", "é", ".s3sync", "x" * 256,
                                  ".f.s3sync-tmp-ab12", "\\", "~", "%2e%2e"]), max_size=8).map("/".join),
        st.binary(max_size=64).map(lambda b: b.decode("utf-8", "surrogateescape")),
    ))
    def test_never_escapes(self, key: str) -> None:
        from s3sync.errors import UnsafeKeyError
        from s3sync.local.keys import KeyMapper

        root = Path("/srv/mirror")
        mapper = KeyMapper(root)
        try:
            path = mapper.to_path(key)
        except UnsafeKeyError:
            # the cached validation refuses it too, every time (refusals are never cached)
            for _ in range(2):
                with pytest.raises(UnsafeKeyError):
                    mapper.check(key)
            return
        mapper.check(key)  # the validation alone agrees, and the cached segments are the same
        assert mapper.parts(key) == tuple(key.split("/"))
        resolved = os.path.normpath(str(path))
        assert resolved.startswith(str(root) + os.sep), (key, path)
        assert os.path.commonpath([str(root), resolved]) == str(root)
        assert Path(resolved).relative_to(root).parts[0] != ".s3sync"
        # the mapping is reversible: the path below the root spells the key, segment for segment
        assert "/".join(Path(resolved).relative_to(root).parts) == key


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _record(draw_key: Any) -> Any:
    return st.fixed_dictionaries({
        "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", "s3:TestEvent", "", "x"])
        | st.text(max_size=10),
        "s3": st.fixed_dictionaries({
            "bucket": st.fixed_dictionaries({"name": st.sampled_from(["b", "other"]) | _json}),
            "object": st.fixed_dictionaries({"key": draw_key}, optional={
                "size": _json, "eTag": _json, "sequencer": _json, "versionId": _json}),
        }),
    })


class TestEventParser:
    """parse_body on hostile bytes and shapes raises only EventParseError."""

    @settings(max_examples=1500, deadline=None)
    @given(st.one_of(
        st.binary(max_size=200),
        _json.map(lambda v: json.dumps(v).encode()),
        st.lists(_record(st.text(max_size=40) | _json), max_size=3).map(
            lambda rs: json.dumps({"Records": rs}).encode()),
        st.fixed_dictionaries({"Type": st.sampled_from(["Notification", "SubscriptionConfirmation", "x"]),
                               "Message": st.text(max_size=50) | _json.map(json.dumps),
                               "SubscribeURL": st.text(max_size=40)}).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"source": st.just("aws.s3"),
                               "detail-type": st.sampled_from(["Object Created", "Object Deleted", "x"]),
                               "detail": _json}).map(lambda v: json.dumps(v).encode()),
    ))
    def test_only_parse_errors(self, body: bytes) -> None:
        from s3sync.model import ChangeSource
        from s3sync.sources.events import EventParseError, parse_body

        with contextlib.suppress(EventParseError):  # anything else fails the test
            parse_body(body, ChangeSource.NOTIFICATION, 0.0, bucket="b")
