"""A real `recnarr serve` (uvicorn) process on 127.0.0.1: start, call, stream, shut down."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from serving_helpers import Server, free_port

from recnarr.inference.contract import Products, Token
from recnarr.serving.ui import parse_sse

pytestmark = pytest.mark.slow


def test_real_uvicorn_process(tmp_path, shared_cache):
    server = Server(tmp_path / "server.log")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=60) as c:
            assert c.get("/healthz").json()["status"] == "ok"
            assert c.get("/readyz").json()["products"] == 18
            r = c.post("/v1/recommendations", json={"user_id": "BB-10002", "n": 2, "text": "desk lamp"})
            assert r.status_code == 200, r.text
            assert len(r.json()["products"]) == 2 and r.json()["narrative"]["text"]

            # stream over a real socket; health checks answer while the model generates
            kinds, health = [], []
            body = {"history": ["OFF-BI-1001"], "n": 3, "sampling": {"max_new_tokens": 24, "seed": 1}}
            with c.stream("POST", "/v1/recommendations/stream", json=body) as s:
                assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
                for event, _ in parse_sse(s.iter_lines()):
                    kinds.append(event)
                    if event == "token" and not health:
                        t = threading.Thread(target=lambda: health.append(
                            httpx.get(f"{server.url}/healthz", timeout=5).status_code))
                        t.start()
                        t.join()
            assert kinds[0] == "products" and kinds[-1] == "final" and "token" in kinds
            assert health == [200]
            assert c.post("/v1/recommendations", json={"n": 99}).status_code == 422
            assert c.get("/v1/products/NOPE").status_code == 404
            metrics = c.get("/metrics").text
            assert 'recnarr_http_requests_total{method="POST",route="/v1/recommendations/stream",status="200"} 1.0' in metrics
    finally:
        code = server.stop()
    log = server.log_path.read_text()
    # graceful: uvicorn finishes, the lifespan stops the worker, then re-raises SIGTERM as its exit status
    assert code in (0, -15), log[-2000:]
    assert "Application startup complete" in log and "Finished server process" in log
    assert "POST /v1/recommendations 200" in log  # our access line: route template, status, duration
    assert "desk lamp" not in log and "OFF-BI-1001" not in log and "BB-10002" not in log


class Slow:
    """A generator whose narrative takes 200 slow tokens; counts what it produced."""

    def __init__(self, inner):
        self.inner, self.produced = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def stream(self, *args, **kwargs):
        if not kwargs.get("narrate", True):
            yield from self.inner.stream(*args, **kwargs)
            return
        yield Products([], [], [])
        for _ in range(200):
            time.sleep(0.02)
            self.produced += 1
            yield Token(" tick")
        raise AssertionError("the stream should have been cancelled")


def test_client_disconnect_stops_generation(tiny_gen):
    import uvicorn

    from recnarr.serving.app import create_app
    from recnarr.serving.settings import Settings

    slow = Slow(tiny_gen)
    app = create_app(generator=slow, settings=Settings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=30) as c, \
                c.stream("POST", "/v1/recommendations/stream", json={"n": 1}) as s:
            for event, _ in parse_sse(s.iter_lines()):
                if event == "token":
                    break  # the client goes away mid-narrative
        deadline = time.monotonic() + 5
        while app.state.service.worker.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not app.state.service.worker.busy and slow.produced < 100  # stopped at the next token
        r = httpx.post(f"{url}/v1/recommendations", json={"n": 1, "narrate": False}, timeout=10)
        assert r.status_code == 200  # the model is free for the next request
    finally:
        server.should_exit = True
        thread.join(10)
