"""Where the bucket's requests go, and which path can send them — decided once per bucket.

Endpoints come from botocore's own S3 endpoint rule set (the one every AWS SDK
shares), not from string formatting: ``s3.{region}.amazonaws.com`` is wrong in
the China (``amazonaws.com.cn``) and GovCloud partitions and knows nothing of
FIPS, dual-stack or access points. Loading the rule set costs ~0.3 s, so it is
done only for AWS endpoints; a custom ``endpoint_url`` (MinIO, moto, rclone) is
already the answer and is taken as given, path-style, the way the aioboto3 path
is configured for it.

:func:`route` then says whether the lean path may send the requests itself.
It declines — and the facade hands every request to the aioboto3 path — for
what it does not implement: a proxy that applies to the endpoint
(``HTTPS_PROXY``/``HTTP_PROXY`` minus ``NO_PROXY``, chosen exactly as botocore
chooses it), an auth scheme other than plain SigV4 (S3 Express, multi-region
access points), or an access point ARN as the bucket (botocore addresses it:
its own host, its region, and no path-style form for a custom endpoint). An
access point *alias* (``...-s3alias``) is addressed like any bucket name.
A custom CA bundle (``AWS_CA_BUNDLE`` or ``ca_bundle`` in the AWS config
file) is simple enough to honour on the lean path: it becomes the TLS
context's trust store.
"""

from __future__ import annotations

import configparser
import dataclasses
import functools
import os
import socket
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from s3sync.errors import ConfigError

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The resolved endpoint of one bucket."""

    url: str  # as the rule set gives it, bucket included (host for virtual-hosted, path otherwise)
    scheme: str  # "http" | "https"
    host: str  # what to connect to: "::1", not "[::1]"
    port: int
    host_header: str  # what the Host header and the signature carry: "[::1]:9000"
    base_path: str  # path prefix of every request, bucket included when path-style ("/b"), else ""
    signing_region: str
    signing_name: str = "s3"
    auth_scheme: str = "sigv4"
    custom: bool = False  # from endpoint_url (settings or AWS_ENDPOINT_URL[_S3]), not the rule set
    access_point_arn: str | None = None  # the bucket is an access point ARN (the aioboto3 path serves it)

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``, for proxy decisions and messages."""
        return f"{self.scheme}://{self.host_header}"


@dataclass(frozen=True, slots=True)
class Route:
    """Which path serves the bucket, and the transport settings both paths honour."""

    endpoint: Endpoint
    lean: bool  # the lean path can send these requests itself
    reason: str  # why not, when ``lean`` is False ("" otherwise)
    proxy: str | None  # the proxy botocore will use for this endpoint
    ca_bundle: str | None  # custom trust store (AWS_CA_BUNDLE / config-file ca_bundle)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for the lean path: the system store, or the custom bundle."""
        if not self.endpoint.secure:
            return None
        try:
            return ssl.create_default_context(cafile=self.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"CA bundle {self.ca_bundle!r} cannot be loaded: {exc}") from exc


def configured_endpoint_url(endpoint_url: str | None, environ: Mapping[str, str]) -> str | None:
    """``s3.endpoint_url``, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` as botocore reads them."""
    if endpoint_url:
        return endpoint_url.rstrip("/")
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() in _TRUE:
        return None
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if environ.get(name):
            return environ[name].rstrip("/")
    return None


def resolve(
    bucket: str,
    region: str | None,
    endpoint_url: str | None = None,
    *,
    fips: bool | None = None,
    dualstack: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """The endpoint of ``bucket``; ``fips``/``dualstack`` default to botocore's environment switches."""
    env = os.environ if environ is None else environ
    region = region or "us-east-1"
    custom = configured_endpoint_url(endpoint_url, env)
    arn = bucket if bucket.startswith("arn:") else None
    if custom:
        url = f"{custom}/{bucket}"
        return dataclasses.replace(_endpoint(url, region, "s3", "sigv4", custom=True), access_point_arn=arn)
    if fips is None:
        fips = env.get("AWS_USE_FIPS_ENDPOINT", "").lower() in _TRUE
    if dualstack is None:
        dualstack = env.get("AWS_USE_DUALSTACK_ENDPOINT", "").lower() in _TRUE
    try:
        resolved = _provider().resolve_endpoint(
            Region=region, Bucket=bucket, UseFIPS=fips, UseDualStack=dualstack, ForcePathStyle=False
        )
    except Exception as exc:  # botocore's EndpointResolutionError: an ARN of another partition, say
        if arn is None:
            raise
        raise ConfigError(f"s3.bucket: access point ARN {arn!r} with s3.region {region!r}: {exc}") from exc
    schemes: list[dict[str, Any]] = resolved.properties.get("authSchemes") or [{}]
    auth = schemes[0]
    endpoint = _endpoint(
        resolved.url,
        str(auth.get("signingRegion") or auth.get("signingRegionSet", [region])[0]),
        str(auth.get("signingName") or "s3"),
        str(auth.get("name") or "sigv4"),
        custom=False,
    )
    return dataclasses.replace(endpoint, access_point_arn=arn)


def endpoint_from_url(url: str, signing_region: str) -> Endpoint:
    """The endpoint a URL S3 named points at (a 307's ``Location``): scheme, host, port, Host header."""
    return _endpoint(url, signing_region, "s3", "sigv4", custom=False)


def route(endpoint: Endpoint, environ: Mapping[str, str] | None = None) -> Route:
    """Decide, once, whether the lean path may serve ``endpoint`` under this environment."""
    env = os.environ if environ is None else environ
    proxy = proxy_for(endpoint.origin, env)
    bundle = ca_bundle(env)
    reason = ""
    if proxy:
        reason = f"proxy {_masked(proxy)} applies to {endpoint.origin}"
    elif endpoint.access_point_arn:
        reason = f"the bucket is an access point ARN ({endpoint.access_point_arn})"
    elif endpoint.auth_scheme != "sigv4":
        reason = f"auth scheme {endpoint.auth_scheme} is not plain SigV4"
    return Route(endpoint, not reason, reason, proxy, bundle)


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy botocore would use for ``url``: ``*_PROXY`` by scheme, unless ``NO_PROXY`` matches.

    Same rules as ``botocore.utils.get_environ_proxies`` (the stdlib's
    ``getproxies_environment`` and ``proxy_bypass_environment`` on the netloc), read
    from ``environ`` rather than the process environment.
    """
    parts = urlsplit(url)
    proxies = environ_proxies(environ)
    if not proxies.get(parts.scheme):
        return None
    try:
        if _proxy_bypass(parts.netloc, proxies):
            return None
    except (TypeError, socket.gaierror):
        pass
    return proxies[parts.scheme]


def environ_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """``urllib.request.getproxies_environment`` over a mapping (same two passes: lower case wins)."""
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        low = name.lower()
        if value and low.endswith("_proxy"):
            proxies[low[:-6]] = value
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)  # CGI: HTTP_PROXY may come from a client's Proxy header (httpoxy)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            if value:
                proxies[name.lower()[:-6]] = value
            else:
                proxies.pop(name.lower()[:-6], None)
    return proxies


def ca_bundle(environ: Mapping[str, str]) -> str | None:
    """``AWS_CA_BUNDLE``, else ``ca_bundle`` of the active profile in the AWS config file."""
    if environ.get("AWS_CA_BUNDLE"):
        return environ["AWS_CA_BUNDLE"]
    path = Path(environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config").expanduser()
    profile = environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or "default"
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except (OSError, configparser.Error):
        return None
    section = profile if profile == "default" else f"profile {profile}"
    if parser.has_option(section, "ca_bundle"):
        return os.path.expanduser(parser.get(section, "ca_bundle").strip()) or None
    return None


# -- internals -----------------------------------------------------------------------------------

# typeshed omits it, but it is public (documented alongside getproxies) and what botocore ends up calling
_proxy_bypass: Any = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


def _endpoint(url: str, signing_region: str, signing_name: str, auth: str, *, custom: bool) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"endpoint {url!r} is not an http(s) URL")
    secure = parts.scheme == "https"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as exc:
        raise ConfigError(f"endpoint {url!r} has an invalid port") from exc
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == (443 if secure else 80) else f"{shown}:{port}"
    return Endpoint(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port,
        host_header=host_header,
        base_path=parts.path.rstrip("/"),
        signing_region=signing_region,
        signing_name=signing_name,
        auth_scheme=auth,
        custom=custom,
    )


@functools.cache
def _provider() -> Any:
    """botocore's S3 endpoint rule set and partitions, loaded once per process (~0.3 s)."""
    from botocore.endpoint_provider import EndpointProvider
    from botocore.loaders import create_loader

    loader = create_loader()
    return EndpointProvider(
        loader.load_service_model("s3", "endpoint-rule-set-1"), loader.load_data("partitions")
    )


def _masked(url: str) -> str:
    """A proxy URL fit for a log line: ``user:password@`` dropped."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
