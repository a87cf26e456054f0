"""Event records of every 2.x version are read alike (S3 sends 2.1, tagging and ACL 2.3); access points.

Recorded by AWS (tests/data/aws-truth/events): ObjectCreated/Removed/Restore
records say ``eventVersion`` 2.1, ObjectTagging and ObjectAcl 2.3; S3-compatible
servers send 2.0 or 2.2. A record is never refused for its minor version, nor
for carrying no ``sequencer`` or ``size`` (deletes, tagging, ACL do not).
"""

from __future__ import annotations

from typing import Any

import pytest

from s3sync.model import ChangeKind, ChangeSource
from s3sync.sources.events import parse_payload


def record(version: str | None, name: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "eventSource": "aws:s3",
        "eventName": name,
        "s3": {"bucket": {"name": "b"}, "object": {"key": "k", **obj}},
    }
    if version is not None:
        rec["eventVersion"] = version
    return rec


@pytest.mark.parametrize("version", ["2.0", "2.1", "2.2", "2.3", "2.10", None])
def test_every_2x_version_is_read(version: str | None) -> None:
    parsed = parse_payload(
        {"Records": [record(version, size=9, sequencer="00AB")]}, ChangeSource.NOTIFICATION
    )
    assert [(c.key, c.kind, c.size, c.sequencer) for c in parsed.changes] == [
        ("k", ChangeKind.UPSERT, 9, "00AB")
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [("ObjectRemoved:Delete", ChangeKind.REMOVE), ("ObjectCreated:Copy", ChangeKind.UPSERT)],
)
def test_no_sequencer_no_size(name: str, kind: ChangeKind) -> None:
    parsed = parse_payload({"Records": [record("2.1", name)]}, ChangeSource.NOTIFICATION)
    (change,) = parsed.changes
    assert (change.kind, change.size, change.sequencer) == (kind, None, None)


@pytest.mark.parametrize("name", ["ObjectTagging:Put", "ObjectTagging:Delete", "ObjectAcl:Put"])
def test_tagging_and_acl_23_ignored_not_refused(name: str) -> None:
    parsed = parse_payload({"Records": [record("2.3", name, eTag="e")]}, ChangeSource.NOTIFICATION)
    assert parsed.changes == [] and parsed.ignored == 1


@pytest.mark.parametrize(
    ("configured", "kept"),
    [
        ("b", True),
        ("other-bucket", False),
        ("arn:aws:s3:us-east-1:123456789012:accesspoint/my-ap", True),
        ("my-ap-abcdefghijklmnopqrstuvwxyz012-s3alias", True),
    ],
)
def test_access_points_do_not_filter_by_bucket(configured: str, kept: bool) -> None:
    """Records name the bucket behind an access point, which the configuration does not know."""
    parsed = parse_payload({"Records": [record("2.1")]}, ChangeSource.NOTIFICATION, bucket=configured)
    assert (len(parsed.changes), parsed.ignored) == ((1, 0) if kept else (0, 1))
