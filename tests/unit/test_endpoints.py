"""Endpoint resolution (botocore's S3 rule set) and the lean-or-aioboto3 routing decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3sync.errors import ConfigError
from s3sync.s3.endpoints import ca_bundle, environ_proxies, proxy_for, resolve, route

NO_ENV: dict[str, str] = {}


class TestPartitions:
    """Hosts come from the rule set, so every partition gets its own DNS suffix."""

    @pytest.mark.parametrize(
        ("region", "host"),
        [
            ("us-east-1", "my-bucket.s3.us-east-1.amazonaws.com"),
            ("eu-west-3", "my-bucket.s3.eu-west-3.amazonaws.com"),
            ("cn-north-1", "my-bucket.s3.cn-north-1.amazonaws.com.cn"),
            ("cn-northwest-1", "my-bucket.s3.cn-northwest-1.amazonaws.com.cn"),
            ("us-gov-west-1", "my-bucket.s3.us-gov-west-1.amazonaws.com"),
        ],
    )
    def test_virtual_hosted(self, region: str, host: str) -> None:
        ep = resolve("my-bucket", region, environ=NO_ENV)
        assert (ep.scheme, ep.host, ep.port, ep.host_header, ep.base_path) == ("https", host, 443, host, "")
        assert ep.signing_region == region
        assert (ep.auth_scheme, ep.signing_name, ep.custom) == ("sigv4", "s3", False)

    def test_dotted_bucket_is_path_style_over_tls(self) -> None:
        """A dotted name cannot match the wildcard certificate: path-style, bucket in the path."""
        ep = resolve("my.dotted.bucket", "eu-west-1", environ=NO_ENV)
        assert ep.host == "s3.eu-west-1.amazonaws.com"
        assert ep.base_path == "/my.dotted.bucket"

    def test_no_region_means_us_east_1(self) -> None:
        assert resolve("b1b", None, environ=NO_ENV).signing_region == "us-east-1"


class TestFipsAndDualStack:
    """FIPS and dual-stack hosts, by argument or by botocore's own environment switches."""

    def test_fips_govcloud(self) -> None:
        ep = resolve("my-bucket", "us-gov-west-1", fips=True, environ=NO_ENV)
        assert ep.host == "my-bucket.s3-fips.us-gov-west-1.amazonaws.com"

    def test_dualstack(self) -> None:
        ep = resolve("my-bucket", "eu-west-1", dualstack=True, environ=NO_ENV)
        assert ep.host == "my-bucket.s3.dualstack.eu-west-1.amazonaws.com"

    def test_dualstack_china(self) -> None:
        ep = resolve("my-bucket", "cn-north-1", dualstack=True, environ=NO_ENV)
        assert ep.host == "my-bucket.s3.dualstack.cn-north-1.amazonaws.com.cn"

    def test_environment_switches(self) -> None:
        env = {"AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true"}
        ep = resolve("my-bucket", "us-east-1", environ=env)
        assert ep.host == "my-bucket.s3-fips.dualstack.us-east-1.amazonaws.com"


class TestCustomEndpoints:
    """A given endpoint_url is used as is, path-style; IPv6 literals keep their brackets in Host."""

    def test_ipv6_with_port(self) -> None:
        ep = resolve("b1b", "us-east-1", "http://[::1]:9000", environ=NO_ENV)
        assert (ep.host, ep.port, ep.host_header, ep.base_path) == ("::1", 9000, "[::1]:9000", "/b1b")
        assert ep.origin == "http://[::1]:9000"

    def test_ipv6_default_port(self) -> None:
        ep = resolve("b1b", "us-east-1", "https://[2001:db8::5]", environ=NO_ENV)
        assert (ep.host, ep.port, ep.host_header) == ("2001:db8::5", 443, "[2001:db8::5]")

    def test_base_path_and_default_port(self) -> None:
        ep = resolve("b1b", "eu-west-1", "http://127.0.0.1:80/minio/", environ=NO_ENV)
        assert (ep.host_header, ep.base_path, ep.signing_region) == ("127.0.0.1", "/minio/b1b", "eu-west-1")

    def test_endpoint_url_from_environment(self) -> None:
        env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2"}
        assert resolve("b1b", "us-east-1", environ=env).port == 2
        assert resolve("b1b", "us-east-1", "http://127.0.0.1:3", environ=env).port == 3
        env["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"
        assert not resolve("b1b", "us-east-1", environ=env).custom

    def test_bad_port(self) -> None:
        with pytest.raises(ConfigError, match="port"):
            resolve("b1b", "us-east-1", "http://127.0.0.1:99999", environ=NO_ENV)


class TestProxies:
    """The proxy choice is botocore's: by scheme, minus NO_PROXY."""

    def test_no_proxy_configured(self) -> None:
        assert proxy_for("http://127.0.0.1:9000", NO_ENV) is None

    def test_by_scheme(self) -> None:
        env = {"HTTPS_PROXY": "http://127.0.0.1:3128"}
        assert proxy_for("https://s3.us-east-1.amazonaws.com", env) == "http://127.0.0.1:3128"
        assert proxy_for("http://127.0.0.1:9000", env) is None

    def test_lower_case_wins(self) -> None:
        env = {"HTTP_PROXY": "http://127.0.0.1:1", "http_proxy": "http://127.0.0.1:2"}
        assert environ_proxies(env)["http"] == "http://127.0.0.1:2"

    def test_cgi_ignores_upper_case_http_proxy(self) -> None:
        env = {"HTTP_PROXY": "http://127.0.0.1:1", "REQUEST_METHOD": "GET"}
        assert proxy_for("http://127.0.0.1:9000", env) is None

    @pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.1:9000", "*", "example.com,127.0.0.1"])
    def test_no_proxy_bypasses(self, no_proxy: str) -> None:
        env = {"HTTP_PROXY": "http://127.0.0.1:3128", "NO_PROXY": no_proxy}
        assert proxy_for("http://127.0.0.1:9000", env) is None

    def test_no_proxy_suffix(self) -> None:
        env = {"HTTPS_PROXY": "http://127.0.0.1:3128", "no_proxy": ".amazonaws.com"}
        assert proxy_for("https://b.s3.us-east-1.amazonaws.com", env) is None
        assert proxy_for("https://b.s3.cn-north-1.amazonaws.com.cn", env) == "http://127.0.0.1:3128"


class TestRoute:
    """What the lean path does not implement goes to the aioboto3 path; the rest stays lean."""

    def test_plain_endpoint_is_lean(self) -> None:
        r = route(resolve("b1b", "us-east-1", "http://127.0.0.1:9000", environ=NO_ENV), NO_ENV)
        assert (r.lean, r.reason, r.proxy, r.ca_bundle) == (True, "", None, None)
        assert r.ssl_context() is None

    def test_proxy_hands_to_boto(self) -> None:
        env = {"HTTP_PROXY": "http://127.0.0.1:3128"}
        r = route(resolve("b1b", "us-east-1", "http://127.0.0.1:9000", environ=env), env)
        assert not r.lean
        assert r.proxy == "http://127.0.0.1:3128"
        assert "proxy" in r.reason

    def test_proxy_credentials_never_in_the_reason(self) -> None:
        env = {"HTTP_PROXY": "http://alice:s3cret@127.0.0.1:3128"}
        r = route(resolve("b1b", "us-east-1", "http://127.0.0.1:9000", environ=env), env)
        assert not r.lean and "s3cret" not in r.reason and "alice" not in r.reason
        assert "127.0.0.1:3128" in r.reason

    def test_proxy_bypassed_stays_lean(self) -> None:
        env = {"HTTP_PROXY": "http://127.0.0.1:3128", "NO_PROXY": "127.0.0.1"}
        assert route(resolve("b1b", "us-east-1", "http://127.0.0.1:9000", environ=env), env).lean

    def test_ca_bundle_stays_lean_and_is_the_trust_store(self, tmp_path: Path) -> None:
        import certifi

        env = {"AWS_CA_BUNDLE": certifi.where()}
        r = route(resolve("my-bucket", "us-east-1", environ=env), env)
        assert r.lean and r.ca_bundle == certifi.where()
        ctx = r.ssl_context()
        assert ctx is not None and ctx.cert_store_stats()["x509_ca"] > 10

    def test_unreadable_ca_bundle_is_a_config_error(self, tmp_path: Path) -> None:
        env = {"AWS_CA_BUNDLE": str(tmp_path / "missing.pem")}
        r = route(resolve("my-bucket", "us-east-1", environ=env), env)
        with pytest.raises(ConfigError, match="CA bundle"):
            r.ssl_context()

    def test_ca_bundle_from_config_file(self, tmp_path: Path) -> None:
        cfg = tmp_path / "config"
        cfg.write_text("[default]\nregion = us-east-1\n[profile ops]\nca_bundle = /etc/ops-ca.pem\n")
        assert ca_bundle({"AWS_CONFIG_FILE": str(cfg), "AWS_PROFILE": "ops"}) == "/etc/ops-ca.pem"
        assert ca_bundle({"AWS_CONFIG_FILE": str(cfg)}) is None
        assert ca_bundle({"AWS_CONFIG_FILE": str(cfg), "AWS_CA_BUNDLE": "/x.pem"}) == "/x.pem"
