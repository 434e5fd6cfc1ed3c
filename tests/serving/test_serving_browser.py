"""End to end in headless Chromium: the real Streamlit UI talking to the real API process; a narrative
appears, and a screenshot is saved under the test's tmp dir.

Needs Debian's `chromium` (apt-get install chromium chromium-driver) and the `playwright` Python package
(driving that system browser; no browser download). Skipped, with the reason, when either is missing.

    RECNARR_E2E_API_URL=http://127.0.0.1:8000   use a running API (e.g. a trained model) instead of the tiny one
    RECNARR_E2E_SCREENSHOT=docs/img/demo.png    also copy the screenshot there (for the README)
    RECNARR_E2E_CHROMIUM=/path/to/chromium      another Chromium binary (default /usr/bin/chromium)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import ROOT, free_port

from recnarr.serving import ui

CHROMIUM = os.environ.get("RECNARR_E2E_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.slow


@pytest.fixture
def api_url(request) -> str:
    external = os.environ.get("RECNARR_E2E_API_URL")
    return external or request.getfixturevalue("live_server").url


@pytest.fixture
def ui_url(api_url, tmp_path):
    port = free_port()
    env = {**os.environ, "RECNARR_API_URL": api_url, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(Path(ui.__file__)), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "streamlit.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "streamlit did not start in 60s"
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_narrative_appears_in_headless_chromium(ui_url, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium chromium-driver")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives the system Chromium)")
    shot = tmp_path / "demo.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(ui_url, wait_until="domcontentloaded")
            page.get_by_text("Who is shopping?").wait_for(timeout=60_000)
            page.get_by_text("Purchase history").wait_for(timeout=30_000)
            page.get_by_role("button", name="Recommend").click()
            # the final verdict (verified, or the flagged fallback), then the timings: the stream is done
            page.get_by_text("Verified").or_(page.get_by_text("Fallback:")).first.wait_for(timeout=90_000)
            page.get_by_text("total (ms)").wait_for(timeout=30_000)
            texts = [t.strip() for t in page.locator("div.narrative").all_inner_texts()]
            assert texts and texts[-1], f"no narrative text on the page: {texts}"
            time.sleep(0.5)  # let the last layout settle before the picture
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.exists() and shot.stat().st_size > 20_000
    if os.environ.get("RECNARR_E2E_SCREENSHOT"):
        target = Path(os.environ["RECNARR_E2E_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
