"""The operations artefacts in deploy/ are valid and only reference real metrics.

External checkers (systemd-analyze, promtool, logrotate) run when installed;
pure-Python checks of the same files always run.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "s3sync.service"
ALERTS = DEPLOY / "prometheus-alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
LOGROTATE = DEPLOY / "logrotate.conf"

# The metrics the daemon exports (see s3sync.stats); dashboards and alerts may use no other.
METRICS = {
    "s3sync_files_synced_total",
    "s3sync_files_deleted_total",
    "s3sync_files_failed_total",
    "s3sync_files_skipped_total",
    "s3sync_files_unchanged_total",
    "s3sync_bytes_downloaded_total",
    "s3sync_events_received_total",
    "s3sync_events_coalesced_total",
    "s3sync_retries_total",
    "s3sync_reconcile_runs_total",
    "s3sync_auth_failures_total",
    "s3sync_queue_depth",
    "s3sync_transfers_in_flight",
    "s3sync_journal_pending",
    "s3sync_last_reconcile_success_timestamp_seconds",
    "s3sync_last_reconcile_duration_seconds",
    "s3sync_s3_reachable",
    "s3sync_directory_writable",
    "s3sync_info",
    "s3sync_transfer_duration_seconds",
    "s3sync_event_to_file_seconds",
}
HISTOGRAMS = {"s3sync_transfer_duration_seconds", "s3sync_event_to_file_seconds"}
_METRIC_RE = re.compile(r"\b(s3sync_[a-z0-9_]+)")


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression, histogram series folded to their family."""
    out = set()
    for name in _METRIC_RE.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name.removesuffix(suffix)
            if base != name and base in HISTOGRAMS:
                name = base
                break
        out.add(name)
    return out


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    cp.read(UNIT, encoding="utf-8")
    return cp


class TestSystemdUnitDirectives:
    """The unit carries every directive the deployment guide promises."""

    def test_service_directives(self) -> None:
        svc = _unit()["Service"]
        expected = {
            "Type": "notify",
            "NotifyAccess": "main",
            "ExecStart": "/opt/s3sync/.venv/bin/s3sync serve --config /etc/s3sync/config.toml",
            "ExecReload": "/bin/kill -HUP $MAINPID",
            "WatchdogSec": "30",
            "Restart": "on-failure",
            "RestartSec": "2",
            "User": "s3sync",
            "Group": "s3sync",
            "ProtectSystem": "strict",
            "ReadWritePaths": "/srv/s3sync-mirror /var/lib/s3sync",
            "NoNewPrivileges": "yes",
            "PrivateTmp": "yes",
            "ProtectHome": "yes",
            "PrivateDevices": "yes",
            "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes",
            "ProtectControlGroups": "yes",
            "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
            "LockPersonality": "yes",
            "SystemCallFilter": "@system-service",
            "CapabilityBoundingSet": "",
            "UMask": "0027",
            "LimitNOFILE": "65536",
            "EnvironmentFile": "-/etc/s3sync/env",
            "StateDirectory": "s3sync",
        }
        for key, value in expected.items():
            assert svc.get(key) == value, key

    def test_stop_timeout_exceeds_default_drain(self) -> None:
        from s3sync.config import SyncSettings

        stop = float(_unit()["Service"]["TimeoutStopSec"])
        assert stop > SyncSettings().drain_timeout_seconds

    def test_memory_deny_write_execute_left_out(self) -> None:
        # libffi trampolines may need W+X pages; the unit explains why it is off.
        assert "MemoryDenyWriteExecute" not in _unit()["Service"]

    def test_install_section(self) -> None:
        cp = _unit()
        assert cp["Install"]["WantedBy"] == "multi-user.target"
        assert "network-online.target" in cp["Unit"]["After"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
class TestSystemdAnalyzeVerify:
    """systemd's own parser accepts the unit without a single warning."""

    def test_verify(self, tmp_path: Path) -> None:
        # verify fails when ExecStart's binary is missing (s3sync is not installed
        # under /opt here), so check a copy whose ExecStart points at /bin/true.
        # User=s3sync needs no rewrite: verify does not resolve users.
        text = UNIT.read_text(encoding="utf-8")
        text, n = re.subn(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", text)
        assert n == 1
        copy = tmp_path / "s3sync.service"
        copy.write_text(text, encoding="utf-8")
        proc = subprocess.run(
            ["systemd-analyze", "verify", str(copy)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        output = proc.stdout + proc.stderr
        # Unknown keys and bad values are only warnings (exit 0): fail on any line
        # that names our unit.
        assert proc.returncode == 0, output
        assert "s3sync.service" not in output, output


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("groups"), list)
    rules: list[dict[str, Any]] = []
    for group in doc["groups"]:
        assert isinstance(group.get("name"), str) and group["name"]
        assert isinstance(group.get("rules"), list) and group["rules"]
        rules.extend(group["rules"])
    return rules


class TestAlertRulesSchema:
    """Every alert has the fields Alertmanager routing and humans rely on."""

    def test_required_fields(self) -> None:
        for rule in _alert_rules():
            assert isinstance(rule.get("alert"), str), rule
            assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), rule
            assert re.fullmatch(r"\d+[smh]", str(rule.get("for"))), rule
            assert rule["labels"]["severity"] in ("warning", "critical"), rule
            assert rule["annotations"]["summary"], rule

    def test_expected_alerts_present(self) -> None:
        names = {r["alert"] for r in _alert_rules()}
        assert {
            "S3SyncFailing",
            "S3SyncReconcileOverdue",
            "S3SyncQueueGrowing",
            "S3SyncS3Unreachable",
            "S3SyncDown",
        } <= names

    def test_only_exported_metrics(self) -> None:
        for rule in _alert_rules():
            unknown = _metric_names(rule["expr"]) - METRICS
            assert not unknown, (rule["alert"], unknown)

    def test_down_alert_covers_absent_and_zero(self) -> None:
        down = next(r for r in _alert_rules() if r["alert"] == "S3SyncDown")
        assert 'absent(up{job="s3sync"})' in down["expr"]
        assert "== 0" in down["expr"]


_PROMTOOL_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{{job="s3sync", instance="a"}}'
        values: '0x20'
      - series: 's3sync_files_failed_total{{instance="a", reason="forbidden"}}'
        values: '0+5x30'
      - series: 's3sync_queue_depth{{instance="a"}}'
        values: '2000+100x40'
      - series: 's3sync_s3_reachable{{instance="a"}}'
        values: '1 1 0x20'
      - series: 's3sync_last_reconcile_success_timestamp_seconds{{instance="a"}}'
        values: '0x150'
      - series: 's3sync_last_reconcile_success_timestamp_seconds{{instance="b"}}'
        values: '0+60x150'
    alert_rule_test:
      - eval_time: 10m
        alertname: S3SyncDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: s3sync, instance: a}}
      - eval_time: 20m
        alertname: S3SyncFailing
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, reason: forbidden}}
      - eval_time: 3m
        alertname: S3SyncFailing
        exp_alerts: []
      - eval_time: 35m
        alertname: S3SyncQueueGrowing
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a}}
      - eval_time: 10m
        alertname: S3SyncS3Unreachable
        exp_alerts:
          - exp_labels: {{severity: critical, instance: a}}
      - eval_time: 140m
        alertname: S3SyncReconcileOverdue
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a}}
"""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
class TestPromtool:
    """Prometheus' own tool accepts the rules and they fire when they should."""

    def test_check_rules(self) -> None:
        proc = subprocess.run(
            ["promtool", "check", "rules", str(ALERTS)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_rules_fire(self, tmp_path: Path) -> None:
        # promtool compares annotations too; what is under test here is expr + for,
        # so run against a copy without annotations.
        doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
        rules = tmp_path / "rules.yml"
        rules.write_text(yaml.safe_dump(doc), encoding="utf-8")
        tests = tmp_path / "alerts_test.yml"
        tests.write_text(_PROMTOOL_TESTS.format(rules=json.dumps(str(rules))), encoding="utf-8")
        proc = subprocess.run(
            ["promtool", "test", "rules", str(tests)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


class TestGrafanaDashboard:
    """The dashboard imports as-is and plots only metrics the daemon exports."""

    def test_metadata(self) -> None:
        dash = _dashboard()
        assert 36 <= dash["schemaVersion"] <= 41
        assert dash["uid"] and dash["title"]
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["DS_PROMETHEUS"]["type"] == "datasource"
        assert variables["DS_PROMETHEUS"]["query"] == "prometheus"

    def test_every_panel_has_queries(self) -> None:
        panels = _panels(_dashboard())
        assert len(panels) >= 9
        ids = [p["id"] for p in _dashboard()["panels"]]
        assert len(ids) == len(set(ids))
        for p in panels:
            assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["expr"].strip(), p["title"]
                assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]

    def test_only_exported_metrics(self) -> None:
        seen: set[str] = set()
        for p in _panels(_dashboard()):
            for t in p["targets"]:
                names = _metric_names(t["expr"])
                assert names, (p["title"], t["expr"])
                assert names <= METRICS, (p["title"], names - METRICS)
                seen |= names
        # The dashboard is the place to look at everything we export.
        assert seen == METRICS

    def test_required_panels(self) -> None:
        exprs = " ".join(t["expr"] for p in _panels(_dashboard()) for t in p["targets"])
        q = "histogram_quantile({}, sum by (le) (rate(s3sync_{}_bucket"
        assert q.format("0.5", "event_to_file_seconds") in exprs
        assert q.format("0.99", "event_to_file_seconds") in exprs
        assert q.format("0.99", "transfer_duration_seconds") in exprs
        assert "time() - max(s3sync_last_reconcile_success_timestamp_seconds" in exprs


class TestLogrotate:
    """The logrotate snippet signals the daemon instead of truncating under it."""

    def test_contents(self) -> None:
        text = LOGROTATE.read_text(encoding="utf-8")
        assert "/var/log/s3sync/*.log" in text
        assert "systemctl kill -s HUP s3sync" in text
        assert "copytruncate" not in re.sub(r"(?m)#.*$", "", text)

    @pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
    def test_logrotate_accepts_it(self, tmp_path: Path) -> None:
        # Point it at tmp_path and at users that exist here; -d changes nothing.
        log = tmp_path / "s3sync.log"
        log.write_text("x\n", encoding="utf-8")
        text = LOGROTATE.read_text(encoding="utf-8")
        text = text.replace("/var/log/s3sync/*.log", f"{tmp_path}/*.log")
        text = text.replace("s3sync s3sync\n", "root root\n")
        conf = tmp_path / "logrotate.conf"
        conf.write_text(text, encoding="utf-8")
        proc = subprocess.run(
            ["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert "error:" not in output, output


class TestExporterMatches:
    """The daemon's /metrics exposition really contains the names and labels used above."""

    def test_names_and_labels(self) -> None:
        from prometheus_client import generate_latest

        from s3sync.api.metrics import make_registry
        from s3sync.stats import SyncStats

        stats = SyncStats()
        stats.synced["event"] += 1
        stats.deleted["reconcile"] += 1
        stats.failed["forbidden"] += 1
        stats.unchanged += 1
        stats.events[("http", "accepted")] += 1
        stats.reconcile_runs["success"] += 1
        stats.transfer_seconds.observe(0.1)
        stats.event_to_file_seconds.observe(0.2)
        text = generate_latest(make_registry(stats)).decode()
        series = re.findall(r"(?m)^(s3sync_[a-z0-9_]+)(\{[^}]*\})?", text)
        exported = {_metric_names(name).pop() for name, _ in series}
        assert exported >= METRICS, METRICS - exported
        labels = {name: lbl for name, lbl in series if lbl}
        for metric, label in [
            ("s3sync_files_synced_total", "source="),
            ("s3sync_files_deleted_total", "source="),
            ("s3sync_files_failed_total", "reason="),
            ("s3sync_files_skipped_total", "reason="),
            ("s3sync_events_received_total", "outcome="),
            ("s3sync_reconcile_runs_total", "outcome="),
            ("s3sync_info", "version="),
            ("s3sync_transfer_duration_seconds_bucket", "le="),
        ]:
            assert label in labels.get(metric, ""), (metric, label)
        assert "source=" in labels["s3sync_events_received_total"]
