"""The API through TestClient: every route, bounds (422 naming the field), 404s, SSE order, API key,
CORS, metrics, back-pressure (503 + Retry-After), timeouts, loading states and privacy of the logs."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving_helpers import make_client

from recnarr.serving.ui import parse_sse

USER = "AA-10001"
BASKET = ["OFF-BI-1001", "OFF-LA-1001"]


def sse(response) -> list[tuple[str, dict]]:
    return list(parse_sse(response.iter_lines()))


# ------------------------------------------------------------------ health, docs
def test_health_ready_docs(client):
    assert client.get("/healthz").json() == {"status": "ok", "state": "ready"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["products"] == 18 and ready["users"] == 4
    assert ready["versions"]["model"] == "tiny-random-init"
    assert ready["block_size"] == 128 and ready["sampling_defaults"]["max_new_tokens"] == 12
    assert set(ready["sampling_defaults"]) == {"max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty"}
    assert client.get("/docs").status_code == 200
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/recommendations", "/v1/recommendations/stream", "/v1/products", "/v1/products/{product_id}",
            "/v1/users", "/v1/users/{user_id}/history", "/healthz", "/readyz", "/metrics"} <= paths


# ------------------------------------------------------------------ recommendations
def test_recommend_known_customer_random_model(client):
    r = client.post("/v1/recommendations", json={"user_id": USER, "n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["products"]) == 3
    bought = {"OFF-BI-1001", "OFF-LA-1001", "OFF-BI-1002", "OFF-PA-1001", "OFF-FA-1001"}
    assert not bought & {p["id"] for p in body["products"]}  # never recommends what was bought
    n = body["narrative"]
    # a random-init model writes noise: the verifier passes it only when it states no fact at all;
    # anything else ends in the flagged fallback
    assert n["product_id"] == body["products"][0]["id"] and n["attempts"] >= 1
    assert n["verified"] or n["fallback"]
    assert set(body["timings_ms"]) >= {"queue", "retrieval", "generate", "verify", "total"}
    assert body["tokens"]["generated"] > 0 and body["tokens_per_second"] > 0
    assert body["versions"]["model"] == "tiny-random-init"


def test_recommend_false_fact_ends_in_flagged_fallback(lying_client):
    r = lying_client.post("/v1/recommendations", json={"user_id": USER, "n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    n = body["narrative"]
    # the grammar never lets "$0.99" be written; the forced sentence is left out, nothing names the product
    assert n["fallback"] is True and n["verified"] is True and n["attempts"] >= 2
    assert any(e.startswith("left out: 'The {product} is now") for e in n["errors"])
    top = body["products"][0]
    assert n["product_id"] == top["id"] and top["title"] in n["text"] and "$0.99" not in n["text"]
    assert {c["fact"] for c in n["citations"]} >= {"product"}


def test_recommend_verified_narrative_with_citations(scripted_client):
    r = scripted_client.post("/v1/recommendations", json={"user_id": "DD-10004", "n": 2, "style": "concise"})
    assert r.status_code == 200, r.text
    body = r.json()
    n = body["narrative"]
    assert n["verified"] and not n["fallback"] and n["attempts"] == 1 and not n["errors"]
    top = body["products"][0]
    assert n["text"].startswith(f"Meet the {top['title']} at ") and " It " in n["text"]
    # the past item cited is the top of the product's evidence, told with a link a record backs
    cited = [c for c in n["citations"] if c["fact"] == "past1"]
    assert cited and cited[0]["source"].split(":")[1].split(".")[0] == top["reasons"][0]["product_id"]
    assert top["reasons"][0]["kind"] in ("similar", "ease", "copurchase", "sequence")
    assert top["reasons"][0]["contribution"] >= top["reasons"][-1]["contribution"]
    sources = {c["fact"]: c["source"] for c in n["citations"]}
    assert sources["product"].startswith(f"product:{top['id']}") and sources["price"].endswith(".price")
    assert any(f.startswith("past") for f in sources)


def test_anonymous_basket(scripted_client):
    r = scripted_client.post("/v1/recommendations", json={"history": BASKET, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {p["id"] for p in body["products"]}.isdisjoint(BASKET)
    assert all(p["reasons"] and p["reasons"][0]["product_id"] in BASKET for p in body["products"])
    # an anonymous basket has no purchase dates, but its items can still be cited (without dates)
    n = body["narrative"]
    assert n["verified"] and body["products"][0]["title"] in n["text"]
    cited = [c["source"].split(":")[1].split(".")[0] for c in n["citations"] if c["fact"].startswith("past")]
    assert cited and set(cited) <= set(BASKET)
    assert not any(c["fact"].endswith("_date") for c in n["citations"])


def test_recommend_text_filters_and_no_narrative(client):
    r = client.post("/v1/recommendations", json={
        "text": "wireless mouse", "n": 5, "narrate": False,
        "filters": {"max_price": 100, "categories": ["Technology"], "in_stock": True}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["narrative"] is None and body["tokens"]["generated"] == 0
    assert body["products"] and all(p["sale_price"] <= 100 and "Technology" in p["category"] for p in body["products"])


def test_recommend_cold_start_returns_popular(client):
    r = client.post("/v1/recommendations", json={"n": 4, "narrate": False})
    assert r.status_code == 200 and len(r.json()["products"]) == 4


# ------------------------------------------------------------------ bounds: 422 naming the field
BAD = [
    ({"n": 0}, ("n",)), ({"n": 11}, ("n",)),
    ({"sampling": {"max_new_tokens": 0}}, ("sampling", "max_new_tokens")),
    ({"sampling": {"max_new_tokens": 257}}, ("sampling", "max_new_tokens")),
    ({"sampling": {"temperature": -0.1}}, ("sampling", "temperature")),
    ({"sampling": {"temperature": 2.5}}, ("sampling", "temperature")),
    ({"sampling": {"top_p": 0}}, ("sampling", "top_p")), ({"sampling": {"top_p": 1.01}}, ("sampling", "top_p")),
    ({"sampling": {"top_k": -1}}, ("sampling", "top_k")), ({"sampling": {"top_k": 201}}, ("sampling", "top_k")),
    ({"sampling": {"repetition_penalty": 0.5}}, ("sampling", "repetition_penalty")),
    ({"sampling": {"repetition_penalty": 2.5}}, ("sampling", "repetition_penalty")),
    ({"sampling": {"seed": -1}}, ("sampling", "seed")),
    ({"text": "x" * 501}, ("text",)),
    ({"history": ["OFF-BI-1001"] * 51}, ("history",)),
    ({"history": [""]}, ("history", 0)),
    ({"history": "OFF-BI-1001"}, ("history",)),
    ({"user_id": "u" * 65}, ("user_id",)),
    ({"style": "angry"}, ("style",)),
    ({"surprise": 1}, ("surprise",)),
    ({"filters": {"max_per_brand": 0}}, ("filters", "max_per_brand")),
    ({"filters": {"max_per_category": 0}}, ("filters", "max_per_category")),
    ({"filters": {"categories": ["c"] * 21}}, ("filters", "categories")),
]


@pytest.mark.parametrize("patch,loc", BAD, ids=lambda x: json.dumps(x)[:40] if isinstance(x, dict) else None)
def test_out_of_bounds_is_422_naming_the_field(client, patch, loc):
    r = client.post("/v1/recommendations", json={"n": 2, **patch})
    assert r.status_code == 422, r.text
    locs = [tuple(d["loc"][1:]) for d in r.json()["detail"]]
    assert loc in locs, locs


def test_min_price_above_max_price_is_an_empty_range_as_the_schema_says(client):
    r = client.post("/v1/recommendations", json={"filters": {"min_price": 50, "max_price": 10}})
    assert r.status_code == 200, r.text
    assert r.json()["products"] == [] and r.json()["narrative"] is None
    schema = client.get("/openapi.json").json()["components"]["schemas"]["FiltersIn"]["properties"]
    assert "empty range" in schema["min_price"]["description"]


def test_nan_and_malformed_json_are_422(client):
    r = client.post("/v1/recommendations", content=b'{"sampling": {"temperature": NaN}}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][1:] == ["sampling", "temperature"]
    assert "input" not in r.json()["detail"][0]  # inputs are not echoed back (privacy; NaN would not serialize)
    assert client.post("/v1/recommendations", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 422


def test_oversized_body_is_413_json(tiny_gen):
    with make_client(tiny_gen, max_body_bytes=2048) as c:
        big = b'{"text": "' + b"a" * 5000 + b'"}'
        r = c.post("/v1/recommendations", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.headers["content-type"] == "application/json"
        assert "2048 bytes" in r.json()["detail"]
        # a chunked body (no Content-Length) is counted as it arrives
        r = c.post("/v1/recommendations", content=iter([big[:1500], big[1500:]]),
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and "2048 bytes" in r.json()["detail"]
        documented = c.get("/openapi.json").json()["paths"]["/v1/recommendations"]["post"]["responses"]
        assert "application/json" in documented["413"]["content"]


def test_json_with_a_wrong_content_type_is_415_saying_so(client):
    r = client.post("/v1/recommendations", content=b'{"n": 1}', headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert "Content-Type: application/json" in r.json()["detail"] and "text/plain" in r.json()["detail"]
    r = client.post("/v1/recommendations/stream", content=b'{"n": 1}')
    assert r.status_code == 415 and "no Content-Type" in r.json()["detail"]


@pytest.mark.parametrize("text", ["lamp\x00", "\x1b[31mred", "bell\x07"])
def test_control_characters_in_text_are_422(client, text):
    r = client.post("/v1/recommendations", json={"text": text, "narrate": False})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "text"]
    assert client.get("/v1/products", params={"q": text}).status_code == 422
    assert client.post("/v1/recommendations", json={"text": "desk\tlamp\nwhite", "narrate": False}).status_code == 200


def test_stream_errors_are_documented_as_json(client):
    op = client.get("/openapi.json").json()["paths"]["/v1/recommendations/stream"]["post"]["responses"]
    assert list(op["200"]["content"]) == ["text/event-stream"]
    for code in ("404", "422", "503", "504"):
        assert list(op[code]["content"]) == ["application/json"], code
    r = client.post("/v1/recommendations/stream", json={"user_id": "ZZ-99999"})
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"


# ------------------------------------------------------------------ 404s
def test_unknown_ids_are_404(client):
    r = client.post("/v1/recommendations", json={"user_id": "ZZ-99999"})
    assert r.status_code == 404 and "ZZ-99999" in r.json()["detail"]
    r = client.post("/v1/recommendations", json={"history": ["OFF-BI-1001", "NOPE-1"]})
    assert r.status_code == 404 and "NOPE-1" in r.json()["detail"]
    r = client.post("/v1/recommendations/stream", json={"history": ["NOPE-1"]})  # before the stream starts
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    assert client.get("/v1/products/NOPE-1").status_code == 404
    assert client.get("/v1/users/ZZ-99999/history").status_code == 404


# ------------------------------------------------------------------ SSE
def test_stream_event_order_random_model(client):
    with client.stream("POST", "/v1/recommendations/stream", json={"user_id": USER, "n": 2}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse(r)
    kinds = [k for k, _ in events]
    assert kinds[0] == "products" and kinds[-1] == "final" and kinds.count("final") == 1
    assert set(kinds[1:-1]) <= {"token"}  # verified sentences, as they pass
    assert [p["id"] for p in events[0][1]["products"]] == [p["id"] for p in events[-1][1]["products"]]
    assert events[-1][1]["narrative"]["text"]


def test_stream_fallback_is_all_that_is_streamed(lying_client):
    with lying_client.stream("POST", "/v1/recommendations/stream", json={"user_id": USER}) as r:
        events = sse(r)
    streamed = "".join(d["text"] for k, d in events if k == "token")
    final = events[-1][1]["narrative"]
    assert events[-1][0] == "final" and final["fallback"]
    assert streamed == final["text"] and "$0.99" not in streamed  # no unverified byte was sent


def test_stream_verified_tokens_match_final_text(scripted_client):
    with scripted_client.stream("POST", "/v1/recommendations/stream", json={"user_id": "DD-10004"}) as r:
        events = sse(r)
    assert [k for k, _ in events][0] == "products" and events[-1][0] == "final"
    streamed = "".join(d["text"] for k, d in events if k == "token")
    final = events[-1][1]["narrative"]
    assert final["verified"] and not final["fallback"] and streamed == final["text"]
    assert "{" not in streamed  # slots are filled before any text leaves the server


def test_max_new_tokens_beyond_the_block_is_clamped_to_what_fits(client):
    # 256 new tokens cannot fit the tiny model's 128-token block: the generator writes what fits
    with client.stream("POST", "/v1/recommendations/stream",
                       json={"user_id": USER, "sampling": {"max_new_tokens": 256}}) as r:
        events = sse(r)
    assert events[0][0] == "products" and events[-1][0] == "final"
    r = client.post("/v1/recommendations", json={"user_id": USER, "sampling": {"max_new_tokens": 256}})
    assert r.status_code == 200
    tokens = r.json()["tokens"]
    assert 0 < tokens["prompt"] < 128


# ------------------------------------------------------------------ catalog routes
def test_products_and_search(client):
    p = client.get("/v1/products/OFF-BI-1003").json()
    assert p["title"].startswith("Fellowes PB500") and p["discount"] == 0.2 and p["sale_price"] == 1016.78
    found = client.get("/v1/products", params={"q": "avery labels"}).json()
    assert found["total"] == 2 and {x["id"] for x in found["products"]} == {"OFF-LA-1001", "OFF-LA-1002"}
    page = client.get("/v1/products", params={"limit": 5, "offset": 15}).json()
    assert page["total"] == 18 and len(page["products"]) == 3
    assert client.get("/v1/products", params={"in_stock": False}).json()["total"] == 1
    r = client.get("/v1/products", params={"limit": 0})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
    assert client.get("/v1/products", params={"q": "x" * 101}).status_code == 422


def test_users_and_history(client):
    users = client.get("/v1/users").json()
    assert users["total"] == 4 and users["users"][0] == {"id": "AA-10001", "name": "Ann Archer",
                                                         "segment": "Consumer", "purchases": 5}
    assert client.get("/v1/users", params={"q": "cole"}).json()["users"][0]["id"] == "CC-10003"
    h = client.get(f"/v1/users/{USER}/history", params={"limit": 2}).json()
    assert h["total"] == 5 and h["name"] == "Ann Archer" and len(h["items"]) == 2
    assert [i["product"]["id"] for i in h["items"]] == ["OFF-PA-1001", "OFF-FA-1001"]  # the latest, oldest first
    assert h["items"][0]["timestamp"] < h["items"][1]["timestamp"]


# ------------------------------------------------------------------ access
def test_api_key(tiny_gen):
    with make_client(tiny_gen, api_key="s3cret") as c:
        assert c.get("/v1/products/OFF-BI-1001").status_code == 401
        assert c.get("/v1/products/OFF-BI-1001", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/recommendations", json={"n": 1, "narrate": False}).status_code == 401
        ok = {"X-API-Key": "s3cret"}
        assert c.get("/v1/products/OFF-BI-1001", headers=ok).status_code == 200
        assert c.post("/v1/recommendations", json={"n": 1, "narrate": False}, headers=ok).status_code == 200
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert c.get(open_path).status_code == 200
        assert c.get("/v1/users").status_code == 401  # customers' names and histories: never without it
        assert c.get("/v1/users/BB-10002/history").status_code == 401
        assert c.get("/v1/users", headers=ok).status_code == 200
        spec = c.get("/openapi.json").json()
        schemes = spec["components"]["securitySchemes"]
        assert any(s.get("name") == "X-API-Key" for s in schemes.values())
        for path, ops in spec["paths"].items():
            assert bool(ops["get" if "get" in ops else "post"].get("security")) == path.startswith("/v1"), path
    # no key configured: the schema declares none (what it promises is what the server does)
    with make_client(tiny_gen) as c:
        spec = c.get("/openapi.json").json()
        assert "securitySchemes" not in spec.get("components", {})
        assert not any(op.get("security") for ops in spec["paths"].values() for op in ops.values())


def test_cors_only_configured_origins(tiny_gen, client):
    with make_client(tiny_gen, cors_origins=["http://shop.example"]) as c:
        r = c.get("/healthz", headers={"Origin": "http://shop.example"})
        assert r.headers.get("access-control-allow-origin") == "http://shop.example"
        r = c.get("/healthz", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        pre = c.options("/v1/recommendations", headers={"Origin": "http://shop.example",
                                                        "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "X-API-Key"})
        assert pre.status_code == 200 and "x-api-key" in pre.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "http://a.b"}).headers


# ------------------------------------------------------------------ metrics
LINE = re.compile(r'^[a-z_:][a-z0-9_:]*(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + ("{" + want + "}" if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


def test_metrics_prometheus_text(lying_client):
    client = lying_client
    client.post("/v1/recommendations", json={"user_id": USER, "n": 2})
    client.post("/v1/recommendations", json={"n": 0})
    client.get(f"/v1/users/{USER}/history")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or LINE.match(line), line
    assert metric(text, "recnarr_http_requests_total", method="POST", route="/v1/recommendations", status="200") == 1
    assert metric(text, "recnarr_http_requests_total", method="POST", route="/v1/recommendations", status="422") == 1
    # ids never reach a label: the route template does
    assert 'route="/v1/users/{user_id}/history"' in text and USER not in text
    assert metric(text, "recnarr_http_request_duration_seconds_count", method="POST", route="/v1/recommendations") == 2
    assert metric(text, "recnarr_generated_tokens_total") > 0 and metric(text, "recnarr_generate_seconds_total") > 0
    assert metric(text, "recnarr_tokens_per_second_count") == 1
    assert metric(text, "recnarr_verifier_failures_total") >= 2 and metric(text, "recnarr_fallbacks_total") == 1
    assert metric(text, "recnarr_narratives_total", outcome="fallback") == 1
    assert metric(text, "recnarr_recommendation_stage_seconds_count", stage="retrieval") == 1
    assert metric(text, "recnarr_model_ready") == 1 and metric(text, "recnarr_queue_waiting") == 0
    buckets = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('recnarr_http_request_duration_seconds_bucket{method="POST",route="/v1/recommendations"')]
    assert buckets == sorted(buckets) and buckets[-1] == 2  # cumulative, +Inf holds every observation


# ------------------------------------------------------------------ concurrency: queue, health while busy, timeout
class Gated:
    """Wraps a generator; each `stream` waits for `gate` before generating (a slow model, on demand)."""

    def __init__(self, inner):
        self.inner, self.gate, self.started = inner, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def stream(self, *args, **kwargs):
        self.started.set()
        if not self.gate.wait(30):
            raise RuntimeError("test gate never opened")
        yield from self.inner.stream(*args, **kwargs)


def test_full_queue_is_503_with_retry_after_and_health_answers_while_generating(tiny_gen):
    gated = Gated(tiny_gen)
    body = {"history": BASKET, "n": 1, "narrate": False}
    with make_client(gated, max_queue=1) as c, ThreadPoolExecutor(2) as pool:
        running = pool.submit(c.post, "/v1/recommendations", json=body)
        assert gated.started.wait(10)
        queued = pool.submit(c.post, "/v1/recommendations", json=body)
        deadline = time.monotonic() + 10
        while c.get("/readyz").json()["queue_waiting"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        t = time.perf_counter()
        full = c.post("/v1/recommendations", json=body)
        assert time.perf_counter() - t < 2  # answered at once, never hangs
        assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
        assert "busy" in full.json()["detail"]
        stream_full = c.post("/v1/recommendations/stream", json=body)
        assert stream_full.status_code == 503 and "retry-after" in stream_full.headers
        # the event loop is free while the model works
        for path in ("/healthz", "/readyz", "/metrics", "/v1/products/OFF-BI-1001"):
            assert c.get(path).status_code == 200
        assert 'recnarr_rejected_requests_total{reason="queue_full"} 2.0' in c.get("/metrics").text
        assert "recnarr_worker_busy 1.0" in c.get("/metrics").text
        gated.gate.set()
        assert running.result(30).status_code == 200 and queued.result(30).status_code == 200


def test_request_timeout_is_504(tiny_gen):
    gated = Gated(tiny_gen)
    with make_client(gated, request_timeout_s=0.3) as c:
        r = c.post("/v1/recommendations", json={"history": BASKET, "narrate": False})
        assert r.status_code == 504 and "timeout" in r.json()["detail"]
        with c.stream("POST", "/v1/recommendations/stream", json={"history": BASKET, "narrate": False}) as s:
            events = sse(s)
        assert events[-1][0] == "error" and events[-1][1]["status"] == 504
        gated.gate.set()
        assert "recnarr_request_timeouts_total 2.0" in c.get("/metrics").text


# ------------------------------------------------------------------ loading states (factory via settings)
_load_gate = threading.Event()


def slow_factory(settings):
    import tiny_generator

    if not _load_gate.wait(30):
        raise RuntimeError("test gate never opened")
    return tiny_generator.build()


def broken_factory(settings):
    raise FileNotFoundError("/srv/recnarr/runs/nowhere/index holds no product index; run `recnarr index`")


ENCODED: list[list[str]] = []


def warming_factory(settings):
    """The tiny generator, with a model path like a real run's and a text encoder that records its calls."""
    import tiny_generator

    gen = tiny_generator.build()
    encode = gen.recommender._text_encoder
    gen.recommender._text_encoder = lambda texts: (ENCODED.append(list(texts)), encode(texts))[1]
    gen.versions = {**gen.versions, "model": {"path": "/srv/recnarr/runs/prod/serving/int8", "quantization": "int8"}}
    return gen


def test_ready_means_warmed_up_and_reveals_no_paths(shared_cache):
    from fastapi.testclient import TestClient

    from recnarr.serving.app import create_app
    from recnarr.serving.settings import Settings

    ENCODED.clear()
    app = create_app(settings=Settings(generator_factory=f"{__name__}:warming_factory"))
    with TestClient(app) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        # the text encoder ran and the catalog view exists before ready: the first request loads nothing
        assert ENCODED and app.state.service._catalog is not None
        body = c.get("/readyz").text
        assert "/srv" not in body and '"path":"int8"' in body.replace(" ", "")
        r = c.post("/v1/recommendations", json={"n": 1, "narrate": False})
        assert r.status_code == 200 and "/srv" not in r.text


def test_loading_then_ready(shared_cache):
    from fastapi.testclient import TestClient

    from recnarr.serving.app import create_app
    from recnarr.serving.settings import Settings

    _load_gate.clear()
    app = create_app(settings=Settings(generator_factory=f"{__name__}:slow_factory"))
    with TestClient(app) as c:
        assert c.get("/healthz").json() == {"status": "ok", "state": "loading"}
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["state"] == "loading"
        r = c.post("/v1/recommendations", json={"n": 1})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert c.get("/v1/products/OFF-BI-1001").status_code == 503
        _load_gate.set()
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        assert c.post("/v1/recommendations", json={"n": 1, "narrate": False}).status_code == 200


def test_failed_load_is_reported(shared_cache):
    from fastapi.testclient import TestClient

    from recnarr.serving.app import create_app
    from recnarr.serving.settings import Settings

    app = create_app(settings=Settings(generator_factory=f"{__name__}:broken_factory"))
    with TestClient(app) as c:
        deadline = time.monotonic() + 10
        while c.get("/healthz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.get("/healthz").json() == {"status": "failed", "state": "failed"}
        r = c.get("/readyz").json()
        assert r["state"] == "failed" and "recnarr index" in r["error"] and "/srv" not in r["error"]
        assert "/srv" not in c.post("/v1/recommendations", json={"n": 1}).text
        assert c.post("/v1/recommendations", json={"n": 1}).status_code == 503


# ------------------------------------------------------------------ privacy
def test_request_contents_never_logged(client, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "gift for my sister's surgery recovery"
    client.post("/v1/recommendations", json={"history": BASKET, "text": secret, "n": 2})
    client.post("/v1/recommendations", json={"user_id": USER, "n": 0})  # a 422 too
    client.get(f"/v1/users/{USER}/history")
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))  # server side
    for private in (secret, *BASKET, USER):
        assert private not in logged
    access = [r.getMessage() for r in caplog.records if r.name == "recnarr.serving.access"]
    assert any(m.startswith("POST /v1/recommendations 200 ") for m in access)
    assert any(m.startswith("GET /v1/users/{user_id}/history 200 ") for m in access)


# ------------------------------------------------------------------ CLI wiring
def test_cli_serve_builds_app_and_runs_uvicorn(monkeypatch):
    import uvicorn

    from recnarr.cli import build_parser
    from recnarr.config import load_config
    from recnarr.stages.serve import serve

    build_parser().parse_args(["serve", "--port", "9001", "--mode", "int8"])
    build_parser().parse_args(["demo-ui", "--api-url", "http://127.0.0.1:9001"])
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    cfg = load_config("tiny", ["serve.max_queue=3"])
    assert serve(cfg, port=9001, mode="int8") == 0
    state = seen["app"].state.service
    assert seen["port"] == 9001 and seen["host"] == "127.0.0.1" and seen["access_log"] is False
    assert state.settings.quantize == "int8" and state.settings.max_queue == 3
    monkeypatch.setenv("RECNARR_MAX_QUEUE", "7")
    serve(cfg)
    assert seen["app"].state.service.settings.max_queue == 7 and seen["port"] == cfg.serve.port
