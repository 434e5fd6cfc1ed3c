"""The Streamlit demo: its helpers (SSE parsing, highlighting, error messages), and the app itself in
Streamlit's AppTest against the real API process (or a mocked HTTP transport for the error states)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx
import pytest
from serving_helpers import free_port
from streamlit.testing.v1 import AppTest

from recnarr.serving import ui

UI = Path(ui.__file__)


# ------------------------------------------------------------------ helpers
def test_ui_imports_nothing_from_recnarr():
    tree = ast.parse(UI.read_text())
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in modules if m.startswith("recnarr")], modules


def test_ui_offers_the_styles_the_api_takes():
    from recnarr.choices import STYLES

    assert ui.STYLES == STYLES


def test_parse_sse():
    lines = ["event: products", 'data: {"products": []}', "", ": ping", "", "event: token", 'data: {"text":',
             'data:  " hi"}', "", 'data: {"x": 1}']
    assert list(ui.parse_sse(lines)) == [("products", {"products": []}), ("token", {"text": " hi"}),
                                         ("message", {"x": 1})]


def test_highlight_marks_cited_values_and_escapes_the_rest():
    text = "Since you bought the Avery 482 <Labels>, meet the Avery 482 Pro at $7.00."
    cites = [{"fact": "past1", "value": "Avery 482 <Labels>", "source": "history[1]:P5.title"},
             {"fact": "product", "value": "Avery 482 Pro", "source": "product:P6.title"},
             {"fact": "price", "value": "$7.00", "source": "product:P6.price"},
             {"fact": "brand", "value": "Avery", "source": "product:P6.brand"}]
    out = ui.highlight(text, cites)
    assert '<mark class="fact" title="past1: history[1]:P5.title">Avery 482 &lt;Labels&gt;</mark>' in out
    assert '<mark class="fact" title="product: product:P6.title">Avery 482 Pro</mark>' in out
    assert '<mark class="fact" title="price: product:P6.price">$7.00</mark>' in out
    assert out.count("<mark") == 3  # "Avery" lies inside longer marks: no nested marks
    assert "<Labels>" not in out


def test_error_messages():
    body = {"detail": [{"loc": ["body", "sampling", "top_p"], "msg": "Input should be greater than 0"}]}
    assert ui.describe_error(422, body) == "The API rejected the request (422): sampling.top_p: Input should be greater than 0"
    assert "Retry in 3s" in ui.describe_error(503, {"detail": "server busy"}, {"retry-after": "3"})
    assert "RECNARR_API_KEY" in ui.describe_error(401, {"detail": "missing"})
    assert ui.money(1270.98) == "\\$1,270.98" and ui.money(3, "EUR") == "EUR 3.00"
    body = ui.request_body(user_id=None, basket=["a"], text="  ", n=2, style="warm", sampling={"top_k": 5})
    assert body == {"n": 2, "style": "warm", "sampling": {"top_k": 5}, "history": ["a"]}


def test_api_client_errors_with_mock_transport():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(503, json={"ready": False, "state": "loading"})
        if request.url.path == "/v1/recommendations/stream":
            return httpx.Response(404, json={"detail": "unknown user id 'x'"})
        if request.url.path == "/v1/users":
            return httpx.Response(200, text="not json")
        raise httpx.ConnectError("refused", request=request)

    api = ui.Api("http://api.test", transport=httpx.MockTransport(handler))
    assert api.readiness() == {"ready": False, "state": "loading"}
    with pytest.raises(ui.ApiError, match="unknown user id") as e:
        list(api.recommend_stream({"user_id": "x"}))
    assert e.value.status == 404
    with pytest.raises(ui.ApiError, match="Cannot reach the API at http://api.test"):
        api.get("/v1/products")
    assert api.get("/v1/users") == "not json"


# ------------------------------------------------------------------ the app (AppTest)
def app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("RECNARR_API_URL", url)
    at = AppTest.from_file(str(UI), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_app_says_when_the_api_is_down(monkeypatch):
    at = app(monkeypatch, f"http://127.0.0.1:{free_port()}")
    assert "Cannot reach the API" in at.error[0].value and "recnarr serve" in at.error[0].value
    assert not at.button  # stopped before any control


def fake_api(monkeypatch, routes: dict[str, httpx.Response]) -> None:
    """Every HTTP call of the app goes to `routes` (path -> response) instead of the network."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        return routes[request.url.path]

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)


def test_app_says_when_the_model_is_loading_or_failed(monkeypatch):
    fake_api(monkeypatch, {"/readyz": httpx.Response(503, json={"ready": False, "state": "loading"})})
    at = app(monkeypatch, "http://api.test")
    assert "loading" in at.info[0].value
    fake_api(monkeypatch, {"/readyz": httpx.Response(503, json={"ready": False, "state": "failed",
                                                                "error": "FileNotFoundError: no index"})})
    at = app(monkeypatch, "http://api.test")
    assert "no index" in at.error[0].value


def test_app_shows_a_busy_api_clearly(monkeypatch):
    ready = {"ready": True, "state": "ready", "products": 1, "users": 1, "versions": {"model": "m"}}
    users = {"users": [{"id": "u1", "name": "Ann", "segment": None, "purchases": 2}], "total": 1}
    fake_api(monkeypatch, {
        "/readyz": httpx.Response(200, json=ready), "/v1/users": httpx.Response(200, json=users),
        "/v1/users/u1/history": httpx.Response(200, json={"user_id": "u1", "items": [], "total": 0}),
        "/v1/recommendations/stream": httpx.Response(503, json={"detail": "server busy"},
                                                      headers={"Retry-After": "4"})})
    at = app(monkeypatch, "http://api.test")
    at.button(key="recommend").click().run()
    assert "busy" in at.error[0].value and "Retry in 4s" in at.error[0].value


@pytest.mark.slow
def test_app_customer_and_basket_flows(monkeypatch, live_server):
    at = app(monkeypatch, live_server.url)
    assert "18 products" in at.caption[0].value
    picker = at.selectbox(key="user_id")
    assert len(picker.options) == 4 and picker.value == "AA-10001"
    picker.set_value("DD-10004").run()
    assert len(at.dataframe) == 1  # the customer's history
    at.slider(key="temperature").set_value(0.0)
    at.slider(key="top_k").set_value(20)
    at.button(key="recommend").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = [m.value for m in at.markdown if m.value.startswith("**") and "\\$" not in m.value]
    assert len(titles) == 3  # three product cards
    assert len(at.html) == 1 and 'class="narrative"' in at.html[0].value  # the final narrative
    assert at.success or at.warning or at.info  # verified (citing facts, or none), or the flagged fallback
    assert {m.label for m in at.metric} >= {"retrieval (ms)", "generate (ms)", "total (ms)", "tokens/s"}
    # each card shows its evidence: the past items that added most to its score, with what they added
    whys = [c.value for c in at.caption if c.value.startswith("why this pick: ")]
    assert len(whys) == 3 and all("(+" in w for w in whys)

    # an anonymous basket: search, pick, recommend
    at.radio(key="mode").set_value("An anonymous basket").run()
    at.text_input(key="product_query").input("avery").run()
    basket = at.multiselect(key="basket")
    assert set(basket.options) == {"Avery Durable Poly Binders", "Avery 482 Address Labels", "Avery File Folder Labels"}
    basket.select("OFF-BI-1001").run()
    at.text_input(key="text").input("labels for folders").run()
    at.button(key="recommend").click().run()
    assert not at.exception and not at.error
    cards = [m.value for m in at.markdown if m.value.startswith("**") and "\\$" not in m.value]
    assert "**Avery Durable Poly Binders**" not in cards and len(cards) == 3  # never the basket itself
    assert json.loads(json.dumps(at.session_state["result"]))["narrative"]["text"]
