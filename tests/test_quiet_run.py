"""A new user's first run, as they type it: `recnarr demo`, `index`, `batch` and `serve` print no library
warning, progress bar or traceback on stderr, and no file they write records an absolute path."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from recnarr.layout import REPO_ROOT

pytestmark = pytest.mark.slow

# what our own commands may print on stderr: uvicorn's and our serving log lines, nothing else
EXPECTED = re.compile(r"^INFO:\s")
NOISE = re.compile(r"warn|error|fail|traceback|deprecat|loading weights|it/s\]|%\|", re.I)


def recnarr(cwd: Path, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recnarr.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env or os.environ.copy())


def unexpected(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not EXPECTED.match(line)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_of(path: Path) -> str:
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype(str).to_csv()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # weights, indexes, memmaps: bytes, no paths
        return ""


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, shared_cache):
    """demo, index and batch of the tiny preset, run from a fresh folder with a relative run dir."""
    cwd = tmp_path_factory.mktemp("newuser")
    env = {k: v for k, v in os.environ.items() if k != "RECNARR_LOG_LEVEL"}  # a new user's default
    runs = {"demo": recnarr(cwd, "demo", "--preset", "tiny", "run_dir=run", env=env),
            "index": recnarr(cwd, "index", "--preset", "tiny", "run_dir=run", env=env),
            "batch": recnarr(cwd, "batch", "--preset", "tiny", "run_dir=run", "--limit", "6", env=env)}
    return cwd, runs


def test_demo_index_and_batch_print_nothing_but_our_own_lines_on_stderr(first_run):
    _, runs = first_run
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {run.stderr[-2000:]}"
        assert unexpected(run.stderr) == [], f"recnarr {name} printed on stderr:\n" + "\n".join(unexpected(run.stderr))
    assert "narrative [" in runs["demo"].stdout  # it did run: narratives came out
    index_line = next(ln for ln in runs["index"].stdout.splitlines() if ln.startswith("index ["))
    assert "flat (exact search)" in index_line and "{}" not in index_line


def test_verbose_brings_the_library_lines_back(first_run):
    cwd, _ = first_run
    env = {**os.environ, "RECNARR_LOG_LEVEL": "debug"}
    # a subprocess that imports what the index stage imports, at the level -v sets
    code = "from recnarr import quiet; quiet.setup(); import sentence_transformers"
    loud = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    quiet_run = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                               env={k: v for k, v in os.environ.items() if k != "RECNARR_LOG_LEVEL"}, timeout=120)
    assert loud.returncode == quiet_run.returncode == 0
    assert NOISE.search(loud.stderr), "the libraries' own warnings are expected under RECNARR_LOG_LEVEL=debug"
    assert unexpected(quiet_run.stderr) == []


def test_no_output_file_records_an_absolute_path(first_run):
    cwd, _ = first_run
    roots = {str(cwd.resolve()), str(REPO_ROOT)}
    files = [p for p in (cwd / "run").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "config.yaml" for p in files)
    leaks = {str(p.relative_to(cwd)): root for p in files for root in roots if root in text_of(p)}
    assert leaks == {}, f"absolute paths in outputs: {leaks}"
    versions = json.loads(pd.read_parquet(next((cwd / "run" / "batch").glob("*.parquet")))["versions"].iloc[0])
    assert versions["model"]["path"] == "models/recnarr-cpu-small"  # relative to the checkout


def test_serve_logs_requests_and_nothing_else(first_run):
    cwd, _ = first_run
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recnarr.cli", "serve", "--preset", "tiny", "run_dir=run",
                             f"serve.port={port}"], cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)).get("ready"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/recommendations", method="POST",
                                     data=json.dumps({"user_id": "KD-16495"}).encode(),
                                     headers={"content-type": "application/json"})
        body = json.load(urllib.request.urlopen(req, timeout=60))
        assert body["products"]
        assert str(REPO_ROOT) not in json.dumps(body) and str(cwd.resolve()) not in json.dumps(body)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert unexpected(err) == [], "recnarr serve printed on stderr:\n" + "\n".join(unexpected(err))
