"""promtool accepts the rule files without a lint finding, and every promtool unit test passes."""

from __future__ import annotations

import subprocess

from tests.alerting.rule_files import PROMETHEUS_CONFIG, REPO_ROOT, rule_paths, unit_test_paths


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def test_check_rules_reports_nothing(promtool):
    result = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", *map(str, rule_paths())])

    assert result.returncode == 0, result.stdout + result.stderr
    findings = [
        line for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not line.startswith("Checking ") and not line.strip().startswith("SUCCESS:")
    ]
    assert findings == []


def test_unit_tests_pass(promtool):
    paths = unit_test_paths()
    tested = {line.strip().removeprefix("- ../") for path in paths for line in path.read_text().splitlines()
              if line.strip().startswith("- ../")}
    assert tested == {path.name for path in rule_paths()}, "every rule file needs a unit test file"

    result = run([promtool, "test", "rules", *map(str, paths)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(paths), result.stdout


def test_unit_test_fails_on_wrong_annotation(promtool, tmp_path):
    # The unit tests compare annotations exactly: a changed description must fail them.
    source = (REPO_ROOT / "alert_rules" / "tests" / "service_test.yml").read_text(encoding="utf-8")
    broken = tmp_path / "service_test.yml"
    broken.write_text(
        source.replace("../service.yml", str(REPO_ROOT / "alert_rules" / "service.yml"))
        .replace("has not been running for 5 minutes", "has not been running for 6 minutes"),
        encoding="utf-8",
    )

    result = run([promtool, "test", "rules", str(broken)])

    assert result.returncode != 0
    assert "JustTradesThreadStopped" in result.stdout + result.stderr


def test_check_config_accepts_prometheus_yml(promtool):
    result = run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_paths())} rule files found" in result.stdout
