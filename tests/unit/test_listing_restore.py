"""A listing's RestoreStatus, as both paths give it, decides whether an archived object is fetched.

The lean path parses the XML; botocore hands the aioboto3 path a dict with a
datetime. Either way :func:`meta_from_listing` turns it into the ``x-amz-restore``
form, and :func:`archived_unrestored` says when a GET could only be refused.
Silence means "not restored" only where the server is known to honour the
attribute (:class:`RestoreStatusReader`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from s3sync.s3.listing import (
    NOT_RESTORED,
    RestoreStatusReader,
    archived_unrestored,
    meta_from_listing,
    parse_list_xml,
)

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def page_xml(*contents: str) -> bytes:
    items = "".join(f"<Contents>{c}</Contents>" for c in contents)
    return f'<?xml version="1.0"?><ListBucketResult xmlns="{NS}">{items}</ListBucketResult>'.encode()


def item(key: str, storage: str, restore: str = "") -> str:
    return (
        f"<Key>{key}</Key><Size>1</Size><ETag>&quot;e&quot;</ETag>"
        f"<StorageClass>{storage}</StorageClass>{restore}"
    )


DONE = (
    "<RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress>"
    "<RestoreExpiryDate>2035-12-21T00:00:00.000Z</RestoreExpiryDate></RestoreStatus>"
)
ONGOING = "<RestoreStatus><IsRestoreInProgress>true</IsRestoreInProgress></RestoreStatus>"


def metas(page: dict[str, Any]) -> dict[str, Any]:
    return {m.key: m for m in map(meta_from_listing, page["Contents"])}


def test_lean_xml_forms() -> None:
    page = RestoreStatusReader(trusted=False).read(
        parse_list_xml(
            page_xml(
                item("cold", "GLACIER"),
                item("thawing", "DEEP_ARCHIVE", ONGOING),
                item("thawed", "GLACIER", DONE),
                item("warm", "STANDARD"),
            )
        )
    )
    got = metas(page)
    assert got["thawed"].restore == 'ongoing-request="false", expiry-date="Fri, 21 Dec 2035 00:00:00 GMT"'
    assert got["thawing"].restore == 'ongoing-request="true"'
    assert got["cold"].restore == NOT_RESTORED  # a RestoreStatus on the page: the server honours it
    assert got["warm"].restore is None
    assert archived_unrestored(got["cold"]) and archived_unrestored(got["thawing"])
    assert archived_unrestored(got["thawed"]) is None and archived_unrestored(got["warm"]) is None


def test_botocore_dict_with_tz_datetime() -> None:
    from dateutil.tz import tzutc

    boto_page = {
        "Contents": [
            {
                "Key": "thawed",
                "Size": 1,
                "StorageClass": "GLACIER",
                "RestoreStatus": {
                    "IsRestoreInProgress": False,
                    "RestoreExpiryDate": dt.datetime(2035, 12, 21, 1, 0, tzinfo=tzutc()),
                },
            }
        ]
    }
    got = metas(RestoreStatusReader(trusted=False).read(boto_page))
    assert got["thawed"].restore == 'ongoing-request="false", expiry-date="Fri, 21 Dec 2035 01:00:00 GMT"'


@pytest.mark.parametrize("trusted", [False, True], ids=["silent-server", "aws"])
def test_silence_is_trusted_only_where_known(trusted: bool) -> None:
    reader = RestoreStatusReader(trusted=trusted)
    got = metas(reader.read(parse_list_xml(page_xml(item("cold", "GLACIER"), item("ia", "STANDARD_IA")))))
    assert got["ia"].restore is None
    if trusted:
        assert got["cold"].restore == NOT_RESTORED and archived_unrestored(got["cold"])
    else:
        assert got["cold"].restore is None and archived_unrestored(got["cold"]) is None  # the GET tells
    # once any page lists a RestoreStatus, the reader trusts the server for the rest of its life
    reader.read(parse_list_xml(page_xml(item("thawed", "GLACIER", DONE))))
    later = metas(reader.read(parse_list_xml(page_xml(item("cold2", "DEEP_ARCHIVE")))))
    assert later["cold2"].restore == NOT_RESTORED
