"""The SAM template for the Lambda forwarder is valid and wires what the docs promise."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "lambda_forwarder" / "template.yaml"
HANDLER = ROOT / "lambda_forwarder" / "handler.py"


def _cfn_lint() -> str:
    beside = Path(sys.executable).with_name("cfn-lint")
    found = str(beside) if beside.exists() else shutil.which("cfn-lint")
    if found is None:  # pragma: no cover - cfn-lint is in the test extra
        pytest.fail("cfn-lint is not installed (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, [str(p) for p in problems]
    assert isinstance(parsed, dict)
    return parsed


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == kind}


class TestLint:
    """cfn-lint finds nothing, not even informational notes."""

    def test_cfn_lint_clean(self) -> None:
        proc = subprocess.run(
            [_cfn_lint(), "--include-checks", "I", "--", str(TEMPLATE)],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


class TestDeclarations:
    """The template declares the function, its logs, the queues and the parameters."""

    def test_parameters(self, template: dict[str, Any]) -> None:
        params = template["Parameters"]
        for name in ("ApiEndpoint", "NotificationSecretId", "TimeoutSeconds", "RetryAttempts"):
            assert name in params
        assert params["TimeoutSeconds"]["Default"] == 30
        assert params["RetryAttempts"]["Default"] == 3

    def test_function(self, template: dict[str, Any]) -> None:
        [fn] = _resources(template, "AWS::Serverless::Function").values()
        props = fn["Properties"]
        assert props["Runtime"] == "python3.12"
        assert props["Handler"] == "handler.lambda_handler"
        assert props["CodeUri"] == "."
        assert "def lambda_handler(" in HANDLER.read_text()
        assert props["LoggingConfig"]["LogGroup"] == {"Ref": "ForwarderLogGroup"}
        assert props["DeadLetterQueue"]["TargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}

    def test_environment_matches_what_the_handler_reads(self, template: dict[str, Any]) -> None:
        env = template["Resources"]["ForwarderFunction"]["Properties"]["Environment"]["Variables"]
        source = HANDLER.read_text()
        for name in ("API_ENDPOINT", "NOTIFICATION_SECRET", "TIMEOUT_SECONDS", "RETRY_ATTEMPTS"):
            assert name in env
            assert f'"{name}"' in source
        assert re.fullmatch(
            r"\{\{resolve:secretsmanager:\$\{NotificationSecretId\}:SecretString\}\}",
            env["NOTIFICATION_SECRET"]["Fn::Sub"],
        )

    def test_log_group_has_retention(self, template: dict[str, Any]) -> None:
        group = template["Resources"]["ForwarderLogGroup"]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}

    def test_sqs_variant_reports_batch_item_failures(self, template: dict[str, Any]) -> None:
        [mapping] = _resources(template, "AWS::Lambda::EventSourceMapping").values()
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        queue = template["Resources"]["NotificationQueue"]["Properties"]
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
        # AWS: visibility timeout at least six times the function timeout
        max_timeout = template["Parameters"]["FunctionTimeout"]["MaxValue"]
        assert queue["VisibilityTimeout"] >= 6 * max_timeout

    def test_dead_letter_queue_and_bucket_notifications(self, template: dict[str, Any]) -> None:
        assert template["Resources"]["DeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
        buckets = _resources(template, "AWS::S3::Bucket")
        assert set(buckets) == {"BucketViaQueue", "BucketDirect"}
        for bucket in buckets.values():
            assert bucket["DeletionPolicy"] == "Retain"
            assert "NotificationConfiguration" in bucket["Properties"]
