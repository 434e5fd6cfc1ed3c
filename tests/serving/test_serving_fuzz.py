"""Schemathesis with all its checks against a real uvicorn process: status codes, content types,
response schemas and headers, acceptance of valid and rejection of invalid data, and auth, on a
bounded number of examples per operation (the SSE operation included). Run once on a server with
no key (the schema then declares none) and once with RECNARR_API_KEY (the schema declares it, and a
request without it or with a wrong one must get 401)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving_helpers import Server

pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency (pip install -e .[dev])")

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 12  # per operation and phase: a few hundred requests per server
KEY = "fuzz-key-0123456789"


def schemathesis_run(url: str, cwd, *extra: str) -> subprocess.CompletedProcess:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))  # the venv's own CLI
    cmd = [exe or "schemathesis", "run", f"{url}/openapi.json", "--checks", "all", "--max-examples",
           str(MAX_EXAMPLES), "--seed", "7", "--workers", "1", "--request-timeout", "60", "--no-color",
           "--generation-database", "none", "--suppress-health-check", "all", "--max-failures", "20", *extra]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "api-key"])
def test_schemathesis_all_checks_against_a_live_server(keyed, tmp_path, shared_cache, live_server):
    if keyed:
        server = Server(tmp_path / "server.log", RECNARR_API_KEY=KEY)
        server.wait_ready()
    else:
        server = live_server
    try:
        spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
        out = schemathesis_run(server.url, tmp_path, *(["-H", f"X-API-Key: {KEY}"] if keyed else []))
    finally:
        if keyed:
            server.stop()
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-8000:]
    # every operation of the schema was tested, the SSE one included
    assert "/v1/recommendations/stream" in spec["paths"]
    n_ops = sum(len(ops) for ops in spec["paths"].values())
    assert re.search(rf"Selected: {n_ops}/{n_ops}\s+Tested: {n_ops}\b", report), report[-3000:]
    assert "No issues found" in report
