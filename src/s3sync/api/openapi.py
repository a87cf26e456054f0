"""OpenAPI 3.1 document built from the pydantic response models, and an offline /docs page.

The page is Swagger UI 5 (the first major version that reads OpenAPI 3.1), vendored in
``swagger_ui/`` so that /docs renders with no network at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from s3sync import __version__
from s3sync.api import schemas as s

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _resp(model: type[BaseModel] | None, desc: str, ctype: str = "application/json") -> dict[str, Any]:
    if model is None:
        return {"description": desc}
    return {"description": desc, "content": {ctype: {"schema": _ref(model)}}}


def _err(desc: str) -> dict[str, Any]:
    return _resp(s.ErrorResponse, desc)


def _q(name: str, schema: dict[str, Any], desc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": desc}


_BOOL = {"type": "string", "enum": ["true", "1", "yes", "on", "false", "0", "no", "off"]}

# A manual sync's prefix must be a key path the mirror could hold (local.keys.check_key, after
# trailing slashes): segments without NUL, no empty, "." or ".." segment, not absolute. Said
# as a pattern so that a client (and the schema fuzz) knows before it asks; what a pattern
# cannot say (a segment over the filesystem's byte limit, the ".s3sync/" state directory,
# s3sync's temp-name shape) is in the description and still answered with a 400.
_SEGMENT = r"(?:[^/\u0000.][^/\u0000]*|\.[^/\u0000.][^/\u0000]*|\.\.[^/\u0000]+)"
_SYNC_PREFIX = {"type": "string", "pattern": rf"^(?:/*|(?:{_SEGMENT}/)*{_SEGMENT}/*)$"}


# The envelopes the event parser takes (s3sync.sources.events); what each record, SNS Message
# or EventBridge detail must hold is checked field by field there, each with a 400 naming it.
_ENVELOPES: list[dict[str, Any]] = [
    {
        "title": "S3 event notification",
        "type": "object",
        "required": ["Records"],
        "properties": {"Records": {"type": "array", "items": {"type": "object"}}},
    },
    {
        "title": "s3:TestEvent",
        "type": "object",
        "required": ["Event"],
        "properties": {"Event": {"const": "s3:TestEvent"}},
    },
    {
        "title": "SNS envelope",
        "type": "object",
        "required": ["Type"],
        "properties": {
            "Type": {"enum": ["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]}
        },
    },
    {"title": "EventBridge event", "type": "object", "required": ["detail-type", "source"]},
]
_NOTIFICATION_BODY: dict[str, Any] = {
    "anyOf": [
        *_ENVELOPES,
        {"title": "a batch of envelopes", "type": "array", "minItems": 1, "items": {"anyOf": _ENVELOPES}},
    ]
}


def build_spec() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        s.ErrorResponse,
        s.ServiceInfo,
        s.Ping,
        s.Health,
        s.Stats,
        s.SyncResponse,
        s.JobAccepted,
        s.Job,
        s.NotificationAccepted,
        s.FileList,
        s.Freshness,
        s.WaitResult,
        s.WaitTimeout,
    ]
    components: dict[str, Any] = {}
    for m in models:
        schema = m.model_json_schema(ref_template=_REF)
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[m.__name__] = schema
    auth_errs = {"401": _err("missing or invalid credentials"), "429": _err("too many failed attempts")}
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "summary": "Service information; a browser (Accept: text/html) gets the status page",
                "description": "The status page's HTML needs no token; the JSON answer does.",
                "responses": {"200": _resp(s.ServiceInfo, "ok"), **auth_errs},
            }
        },
        "/ping": {"get": {"summary": "Liveness", "security": [], "responses": {"200": _resp(s.Ping, "ok")}}},
        "/api/v1/health": {
            "get": {
                "summary": "Health (S3 and directory)",
                "security": [],
                "responses": {
                    "200": _resp(s.Health, "healthy"),
                    "503": _resp(s.Health, "degraded or unhealthy"),
                },
            }
        },
        "/api/v1/config": {
            "get": {
                "summary": "Effective configuration, secrets redacted",
                "responses": {
                    "200": {
                        "description": "configuration",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **auth_errs,
                },
            }
        },
        "/api/v1/stats": {
            "get": {"summary": "Counters and gauges", "responses": {"200": _resp(s.Stats, "ok"), **auth_errs}}
        },
        "/api/v1/freshness": {
            "get": {
                "summary": "Watermarks: how current the mirror provably is",
                "responses": {"200": _resp(s.Freshness, "ok"), **auth_errs},
            }
        },
        "/api/v1/wait": {
            "get": {
                "summary": "Wait until the mirror holds a key's given version (or not the key)",
                "description": "If the mirror does not match yet, s3sync fetches (or removes) the key "
                "itself, as an event would; waiters on one key share one fetch.",
                "parameters": [
                    {"name": "key", "in": "query", "required": True, "schema": {"type": "string"}},
                    _q("etag", {"type": "string"}, "wait for this ETag (quotes optional)"),
                    _q("version_id", {"type": "string"}, "wait for this version id"),
                    _q("absent", _BOOL, "wait until the key is not in the mirror"),
                    _q("timeout", {"type": "number", "minimum": 0, "maximum": 300}, "seconds (default 30)"),
                ],
                "responses": {
                    "200": _resp(s.WaitResult, "the mirror matches"),
                    "400": _err("bad parameter, unsafe_key or not_mirrored"),
                    "503": _err("not connected to S3 yet"),
                    "504": _resp(s.WaitTimeout, "timed out; the state the mirror has"),
                    **auth_errs,
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus exposition",
                "responses": {
                    "200": {
                        "description": "text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **auth_errs,
                },
            }
        },
        "/api/v1/sync": {
            "post": {
                "summary": "Manual reconcile (foreground or background)",
                "parameters": [
                    _q(
                        "prefix",
                        _SYNC_PREFIX,
                        "only keys under this prefix (within s3.prefix); a key path: no NUL, no"
                        " empty, '.' or '..' segment, not absolute, no segment over the filesystem's"
                        " name limit, not under .s3sync/",
                    ),
                    _q("background", _BOOL, "return 202 with a job id at once"),
                    _q("delete", _BOOL, "delete local files gone from the bucket"),
                    _q("dry_run", _BOOL, "report only"),
                ],
                "responses": {
                    "200": _resp(s.SyncResponse, "finished"),
                    "202": _resp(s.JobAccepted, "started"),
                    "400": _err("bad parameter"),
                    "409": _err("a sync job is already running"),
                    **auth_errs,
                },
            }
        },
        "/api/v1/sync/{job_id}": {
            "get": {
                "summary": "Background sync job state",
                "parameters": [
                    {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": _resp(s.Job, "job"), "404": _err("unknown job"), **auth_errs},
            }
        },
        "/api/v1/s3-notification": {
            "post": {
                "summary": "S3 / SNS / EventBridge event intake (202 = durably queued)",
                "description": "Bearer token, or HMAC: X-S3Sync-Timestamp and "
                "X-S3Sync-Signature: sha256=hex(HMAC-SHA256(secret, timestamp + '.' + body)).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _NOTIFICATION_BODY}},
                },
                "responses": {
                    "202": _resp(s.NotificationAccepted, "accepted"),
                    "400": _err("malformed event"),
                    "413": _err("body too large"),
                    "415": _err("Content-Encoding not supported"),
                    "503": _err("shutting down"),
                    **auth_errs,
                },
            }
        },
        "/api/v1/files": {
            "get": {
                "summary": "Paginated listing of the mirror or the bucket",
                "parameters": [
                    _q("source", {"type": "string", "enum": ["local", "s3"]}, "local (default) or s3"),
                    _q("prefix", {"type": "string"}, "key prefix"),
                    _q(
                        "limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (default 100)"
                    ),
                    _q(
                        "cursor",
                        {"type": "string", "pattern": s.CURSOR_PATTERN},
                        "next_cursor from the previous page",
                    ),
                ],
                "responses": {"200": _resp(s.FileList, "a page"), "400": _err("bad parameter"), **auth_errs},
            }
        },
        "/api/v1/download/{key}": {
            "get": {
                "summary": "Stream the local copy (Range supported)",
                "parameters": [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "file bytes",
                        "content": {
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "206": {"description": "partial content"},
                    "400": _err("unsafe key"),
                    "404": _err("not in mirror"),
                    "416": {"description": "range not satisfiable"},
                    **auth_errs,
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "s3sync",
            "version": __version__,
            "description": "Keeps a local directory an exact, always-current mirror of an S3 bucket.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


SWAGGER_UI_VERSION = "5.35.0"  # vendored in s3sync/api/swagger_ui (reads OpenAPI 3.1; 4.x does not)
SWAGGER_UI_DIR = Path(__file__).with_name("swagger_ui")

_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>s3sync API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({spec: %s, dom_id: "#swagger-ui",
  validatorUrl: null, persistAuthorization: false});</script>
</body></html>
"""


def docs_html(spec: dict[str, Any]) -> str:
    """The /docs page with the spec inline: it opens without a token (the API calls it makes need
    one, entered with "Authorize"), and it needs nothing from the network."""
    inline = json.dumps(spec, separators=(",", ":")).replace("<", "\\u003c")  # no "</script>" inside
    return _DOCS_HTML % inline
