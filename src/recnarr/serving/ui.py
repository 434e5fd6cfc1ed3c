"""The Streamlit demo: an HTTP client of the recnarr API. It holds no model and imports nothing from
recnarr; everything it shows comes from the API at $RECNARR_API_URL (default http://127.0.0.1:8000),
with $RECNARR_API_KEY sent as X-API-Key when set.

    recnarr demo-ui --api-url http://127.0.0.1:8000     # or: streamlit run src/recnarr/serving/ui.py

Pick a real customer or build an anonymous basket, tune the sampling, and watch the products arrive,
then the narrative stream in, then the verified text with every cited fact highlighted.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import streamlit as st

DEFAULT_API = "http://127.0.0.1:8000"
# the API's styles (recnarr.choices.STYLES): the UI talks to the API only over HTTP, so it imports nothing of
# recnarr; tests/serving/test_serving_ui.py checks the two lists agree
STYLES = ("warm", "concise", "premium")
TIMING_LABELS = (("queue", "queue"), ("retrieval", "retrieval"), ("generate", "generate"), ("verify", "verify"),
                 ("total", "total"))


# ---------------------------------------------------------------------------------------------- HTTP
class ApiError(Exception):
    """A failed API call, with a message meant for the person using the demo."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def describe_error(status: int, body: Any, headers: dict[str, str] | None = None) -> str:
    """One readable line for an API error response."""
    detail = body.get("detail") if isinstance(body, dict) else body
    if status == 422 and isinstance(detail, list):
        fields = "; ".join(f"{'.'.join(str(x) for x in d.get('loc', [])[1:]) or 'body'}: {d.get('msg')}"
                           for d in detail if isinstance(d, dict))
        return f"The API rejected the request (422): {fields}"
    if status == 401:
        return "The API needs a key (401): start the demo with RECNARR_API_KEY set to the service's key."
    if status == 503:
        retry = (headers or {}).get("retry-after")
        return f"The API is busy or still loading the model (503): {detail}" + (f" Retry in {retry}s." if retry else "")
    if status == 504:
        return f"The request timed out on the server (504): {detail}"
    return f"The API answered {status}: {detail}"


class Api:
    def __init__(self, base_url: str, api_key: str | None = None, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, transport=transport,
                                   timeout=httpx.Timeout(10.0, read=180.0))

    def _unreachable(self, e: Exception) -> ApiError:
        return ApiError(f"Cannot reach the API at {self.base_url} ({type(e).__name__}). Start it with "
                        "`recnarr serve`, or point the demo at it with RECNARR_API_URL.")

    def get(self, path: str, **params: Any) -> Any:
        try:
            r = self.client.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        return self._json(r)

    def _json(self, r: httpx.Response) -> Any:
        try:
            body = r.json()
        except ValueError:
            body = r.text[:200]
        if r.status_code >= 400:
            raise ApiError(describe_error(r.status_code, body, dict(r.headers)), r.status_code)
        return body

    def readiness(self) -> dict[str, Any]:
        """/readyz (503 while loading is an answer, not an error)."""
        try:
            r = self.client.get("/readyz")
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        try:
            return r.json()
        except ValueError:
            raise ApiError(f"{self.base_url}/readyz did not answer JSON: is this the recnarr API?") from None

    def recommend_stream(self, body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """(event, data) pairs from POST /v1/recommendations/stream."""
        try:
            with self.client.stream("POST", "/v1/recommendations/stream", json=body) as r:
                if r.status_code >= 400:
                    r.read()
                    self._json(r)
                yield from parse_sse(r.iter_lines())
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """Server-Sent Events -> (event name, JSON data); comments (keep-alive pings) are skipped."""
    event, data = "message", []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, json.loads("\n".join(data))


# ---------------------------------------------------------------------------------------------- text
def money(x: float, currency: str = "USD") -> str:
    """Markdown-safe money (Streamlit reads `$...$` as LaTeX, so the dollar sign is escaped)."""
    sign = "\\$" if currency == "USD" else f"{currency} "
    return f"{sign}{x:,.2f}"


def highlight(text: str, citations: list[dict[str, Any]]) -> str:
    """HTML of the narrative with every cited value marked (longest first, no overlaps); the mark's
    tooltip names the fact and its source."""
    spans: list[tuple[int, int, dict[str, Any]]] = []
    for c in sorted(citations, key=lambda c: -len(str(c.get("value", "")))):
        value = str(c.get("value", ""))
        if not value:
            continue
        start = 0
        while (i := text.find(value, start)) != -1:
            end = i + len(value)
            if all(end <= s or i >= e for s, e, _ in spans):
                spans.append((i, end, c))
            start = end
    out, pos = [], 0
    for s, e, c in sorted(spans, key=lambda x: x[0]):
        out.append(html.escape(text[pos:s]))
        tip = html.escape(f"{c.get('fact')}: {c.get('source')}", quote=True)
        out.append(f'<mark class="fact" title="{tip}">{html.escape(text[s:e])}</mark>')
        pos = e
    out.append(html.escape(text[pos:]))
    return "".join(out)


NARRATIVE_CSS = ("font-size:1.15rem;line-height:1.6;padding:0.8rem 1rem;border-radius:0.5rem;"
                 "background:rgba(128,128,128,0.08)")
MARK_CSS = "<style>mark.fact{background:#ffe08a;padding:0 2px;border-radius:3px}</style>"


def narrative_html(inner: str, streaming: bool = False) -> str:
    cursor = "&#9612;" if streaming else ""
    return f'{MARK_CSS}<div class="narrative" style="{NARRATIVE_CSS}">{inner}{cursor}</div>'


def request_body(*, user_id: str | None, basket: list[str], text: str, n: int, style: str,
                 sampling: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"n": n, "style": style, "sampling": sampling}
    if user_id:
        body["user_id"] = user_id
    if basket:
        body["history"] = basket
    if text.strip():
        body["text"] = text.strip()[:500]
    return body


# ---------------------------------------------------------------------------------------------- views

# the recommender's score terms (`Recommender.contributions`), as a shopper reads them
EVIDENCE_WORDS = {"similar": "similar to", "ease": "bought by the same customers as",
                  "copurchase": "bought together with", "sequence": "often bought after"}


def why(reason: dict) -> str:
    """One item of a card's evidence: what tied the pick to it, and how much it added to the score."""
    said = EVIDENCE_WORDS.get(reason.get("kind", "similar"), "similar to")
    support = f", {reason['copurchase_count']} customers had both" if reason.get("copurchase_count") else ""
    return f"{said} {reason['title']} (+{reason.get('contribution', 0.0):.2f}{support})"


def product_card(p: dict[str, Any]) -> None:
    with st.container(border=True):
        st.markdown(f"**{p['title']}**")
        meta = " · ".join(x for x in [p.get("brand") or "", " › ".join(p.get("category") or [])] if x)
        if meta:
            st.caption(meta)
        cur = p.get("currency", "USD")
        if p.get("discount", 0) > 0:
            st.markdown(f"~~{money(p['price'], cur)}~~ **{money(p['sale_price'], cur)}** "
                        f":red-badge[-{round(p['discount'] * 100)}%]")
        else:
            st.markdown(f"**{money(p['price'], cur)}**")
        st.caption(("in stock" if p.get("in_stock", True) else "out of stock") + f" · score {p.get('score', 0):.3f}")
        reasons = p.get("reasons") or []
        if reasons:
            st.caption("why this pick: " + "; ".join(why(r) for r in reasons[:3]))


def show_products(products: list[dict[str, Any]]) -> None:
    if not products:
        st.info("No product passes the filters.")
        return
    cols = st.columns(min(len(products), 4))
    for i, p in enumerate(products):
        with cols[i % len(cols)]:
            product_card(p)


def show_final(result: dict[str, Any]) -> None:
    n = result.get("narrative")
    if n:
        st.html(narrative_html(highlight(n["text"], n.get("citations", []))))
        if n.get("fallback"):
            st.warning(f"Fallback: all {n['attempts']} generated narratives failed the verifier, so this plain "
                       "factual sentence is shown instead. Last errors: " + "; ".join(n.get("errors", [])[:3]))
        elif not n.get("citations"):
            st.info(f"Verified, but it states no fact from the catalog or history (attempt {n['attempts']}).")
        else:
            st.success(f"Verified: every fact checked against the catalog and history (attempt {n['attempts']}).")
        if n.get("citations"):
            with st.expander(f"Cited facts ({len(n['citations'])})"):
                st.dataframe([{"fact": c["fact"], "value": c["value"], "source": c["source"]}
                              for c in n["citations"]], hide_index=True)
    timings = result.get("timings_ms", {})
    cols = st.columns(len(TIMING_LABELS) + 1)
    for col, (key, label) in zip(cols, TIMING_LABELS, strict=False):
        col.metric(f"{label} (ms)", f"{timings.get(key, 0):.0f}")
    tps = result.get("tokens_per_second")
    cols[-1].metric("tokens/s", f"{tps:.0f}" if tps else "-")
    tokens = result.get("tokens", {})
    model = result.get("versions", {}).get("model", "?")
    st.caption(f"{tokens.get('prompt', 0)} prompt + {tokens.get('generated', 0)} generated tokens · model: "
               f"{model if isinstance(model, str) else json.dumps(model)}")


def sidebar(api: Api, defaults: dict[str, Any], block_size: int | None) -> tuple[dict[str, Any], int, str]:
    """Sampling controls, starting at the service's defaults."""
    d = {"max_new_tokens": 120, "temperature": 0.7, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1,
         **{k: v for k, v in defaults.items() if v is not None}}
    max_tokens = 256 if not block_size else max(8, min(256, block_size // 2))
    with st.sidebar:
        st.header("Sampling")
        style = st.segmented_control("Style", STYLES, default="warm", required=True, key="style") or "warm"
        n = st.slider("Products", 1, 10, 3, key="n")
        max_new = st.slider("Max new tokens", 1, max_tokens, min(int(d["max_new_tokens"]), max_tokens),
                            key="max_new_tokens", help=f"the model's context is {block_size} tokens, prompt included"
                            if block_size else None)
        temperature = st.slider("Temperature", 0.0, 2.0, float(d["temperature"]), step=0.05, key="temperature",
                                help="0 = greedy")
        top_k = st.slider("Top-k", 0, 200, int(d["top_k"]), key="top_k", help="0 = off")
        top_p = st.slider("Top-p", 0.05, 1.0, max(0.05, float(d["top_p"])), step=0.05, key="top_p", help="1 = off")
        rep = st.slider("Repetition penalty", 1.0, 2.0, min(2.0, max(1.0, float(d["repetition_penalty"]))), step=0.05,
                        key="repetition_penalty", help="1 = off")
        seed = st.number_input("Seed (-1 = random)", -1, 2**31 - 1, -1, key="seed")
        st.divider()
        st.caption(f"API: {api.base_url}")
    sampling: dict[str, Any] = {"max_new_tokens": int(max_new), "temperature": float(temperature),
                                "top_k": int(top_k), "top_p": float(top_p), "repetition_penalty": float(rep)}
    if seed is not None and seed >= 0:
        sampling["seed"] = int(seed)
    return sampling, int(n), str(style)


def pick_customer(api: Api) -> str | None:
    users = api.get("/v1/users", limit=500, min_purchases=1)["users"]
    if not users:
        st.info("The dataset has no customers with purchases; build an anonymous basket instead.")
        return None
    labels = {u["id"]: f"{u.get('name') or u['id']} · {u['id']} · {u['purchases']} purchases" for u in users}
    user_id = st.selectbox("Customer", list(labels), format_func=labels.__getitem__, key="user_id")
    hist = api.get(f"/v1/users/{user_id}/history", limit=20)
    st.caption(f"Purchase history ({hist['total']} items, latest {len(hist['items'])} shown)")
    st.dataframe([{"date": (h["timestamp"] or "")[:10], "product": h["product"]["title"],
                   "category": " › ".join(h["product"]["category"]), "price": h["product"]["price"]}
                  for h in hist["items"]], hide_index=True)
    return user_id


def build_basket(api: Api) -> list[str]:
    titles: dict[str, str] = st.session_state.setdefault("basket_titles", {})
    q = st.text_input("Search products to add", key="product_query", max_chars=100)
    found = api.get("/v1/products", q=q or None, limit=25)["products"]
    titles.update({p["id"]: p["title"] for p in found})
    options = list(dict.fromkeys([*st.session_state.get("basket", []), *(p["id"] for p in found)]))
    basket = st.multiselect("Basket (anonymous: only product ids are sent)", options,
                            format_func=lambda pid: titles.get(pid, pid), key="basket", max_selections=50)
    return list(basket)


def run_recommendation(api: Api, body: dict[str, Any]) -> None:
    products_area, narrative_area = st.container(), st.empty()
    text = ""
    for event, data in api.recommend_stream(body):
        if event == "products":
            with products_area:
                show_products(data["products"])
        elif event == "token":
            text += data["text"]
            narrative_area.html(narrative_html(html.escape(text), streaming=True))
        elif event == "final":
            narrative_area.empty()
            st.session_state["result"] = data
            show_final(data)
        elif event == "error":
            st.error(describe_error(int(data.get("status", 500)), data))


def main() -> None:
    st.set_page_config(page_title="recnarr demo", layout="wide")
    st.title("recnarr: grounded recommendation narratives")
    api = Api(os.environ.get("RECNARR_API_URL", DEFAULT_API), os.environ.get("RECNARR_API_KEY") or None)
    try:
        ready = api.readiness()
    except ApiError as e:
        st.error(str(e))
        st.stop()
    if not ready.get("ready"):
        msg = f"The API is up but not ready (state: {ready.get('state')})."
        if ready.get("error"):
            st.error(msg + f" Loading failed: {ready['error']}")
        else:
            st.info(msg + " The model is loading; reload this page in a few seconds.")
        st.stop()
    st.caption(f"{ready.get('products')} products · {ready.get('users')} customers · model "
               f"{ready.get('versions', {}).get('model', '?')}")
    sampling, n, style = sidebar(api, ready.get("sampling_defaults") or {}, ready.get("block_size"))
    try:
        mode = st.radio("Who is shopping?", ["A real customer", "An anonymous basket"], horizontal=True, key="mode")
        user_id, basket = (pick_customer(api), []) if mode == "A real customer" else (None, build_basket(api))
        text = st.text_input("Looking for (optional)", key="text", max_chars=500)
        go = st.button("Recommend", type="primary", key="recommend")
        if go:
            st.session_state.pop("result", None)
            run_recommendation(api, request_body(user_id=user_id, basket=basket, text=text, n=n, style=style,
                                                 sampling=sampling))
        elif "result" in st.session_state:
            show_products(st.session_state["result"]["products"])
            show_final(st.session_state["result"])
    except ApiError as e:
        st.error(str(e))


if __name__ == "__main__":
    main()
