"""schemathesis against a running platform with docs/openapi.yaml: no 5xx, and responses match the document.

The platform's TradingView feed points at the local TradingView peer, so its endpoints return data from a live feed.
schemathesis gets the API key through the document's ApiKeyHeader scheme only, so its ignored_auth check also
sends requests without it (and with a wrong one) and expects them rejected.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.peers.tradingview_ws import TradingViewPeer

from .conftest import API_KEY, start_server

SPEC = REPO_ROOT / "docs" / "openapi.yaml"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "ignored_auth",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
)
MAX_EXAMPLES = 25


def schemathesis_command() -> list[str]:
    executable = Path(sys.executable).with_name("schemathesis")
    if executable.exists():
        return [str(executable)]
    found = shutil.which("schemathesis")
    return [found] if found else []


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("openapi")
    with TradingViewPeer() as tradingview:
        server = start_server(workdir, env={
            "JT_FEEDS_ENABLED": "true",
            "JT_POSITION_MONITOR_ENABLED": "false",
            "JT_TOKEN_REFRESH_ENABLED": "false",
            "JT_TRADINGVIEW_WS_URL": tradingview.ws_url,
            "JT_TRADINGVIEW_POLL_URL": f"{tradingview.http_url}/scan",
            "JT_TRADINGVIEW_JWT_REFRESH_URL": f"{tradingview.http_url}/chart/",
            # schemathesis logs in many times with generated passwords; the throttle is tested elsewhere.
            "JT_LOGIN_MAX_FAILURES": "100000",
        })
        yield server, workdir
        server.stop()


def test_responses_match_openapi_document(live_server):
    server, workdir = live_server
    command = schemathesis_command()
    assert command, "schemathesis is not installed in the venv: pip install schemathesis"
    config = workdir / "schemathesis.toml"
    config.write_text(f'[auth.openapi.ApiKeyHeader]\napi_key = "{API_KEY}"\n')

    result = subprocess.run(
        [*command, "--config-file", str(config), "run", str(SPEC), "--url", server.url,
         "--checks", ",".join(CHECKS), "--max-examples", str(MAX_EXAMPLES), "--seed", "20261204",
         "--workers", "2", "--request-timeout", "10", "--no-color",
         "--report", "junit", "--report-dir", str(workdir / "schemathesis-report")],
        cwd=workdir, capture_output=True, text=True, timeout=600,
    )

    summary = result.stdout[result.stdout.find("FAILURES"):] if "FAILURES" in result.stdout else result.stdout[-3000:]
    assert result.returncode == 0, f"schemathesis found problems:\n{summary[-12000:]}\n{result.stderr[-2000:]}"
    assert "30 selected" in result.stdout or "Operations:" in result.stdout
