"""On-device narratives: the customer's history never leaves the device.

The device holds the GGUF model (run by llama.cpp: `generation.backend=llamacpp`), a snapshot of
the public catalog (titles and facts for the verifier) and the customer's own purchases. The server
is asked only for candidates, as an anonymous basket (`POST /v1/recommendations`, `narrate: false`,
the service's anonymous mode, which stores nothing). The narrative is written, slot-filled and
verified on the device by the same `NarrativeGenerator` the service runs.

What crosses the network, exactly:
- out: `{"history": [product ids, oldest first], "n": k, "narrate": false}`. No user id, no name, no
  purchase dates, no free text.
- back: the candidates' product cards (public catalog data), scores, and which of the sent ids each
  candidate connects to.
`RemoteRetriever.sent` keeps every body sent, and `recnarr ondevice` prints them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from recnarr.config import RunConfig
from recnarr.data.schema import Dataset, Product
from recnarr.inference.contract import Result
from recnarr.inference.engine import Engine
from recnarr.inference.generator import NarrativeGenerator
from recnarr.retrieval.recommender import Filters, Reason, Recommendation

PRODUCT_FIELDS = [f.name for f in fields(Product)]


class ServerError(RuntimeError):
    pass


class RemoteRetriever:
    """The service's retriever seen from a device; stands in for `Recommender` in `NarrativeGenerator`.

    `recommend` sends product ids only. Product lookups (`index.product`) and the customer's history
    (`user_history`) are answered from what the device holds.
    """

    def __init__(self, url: str, device: Dataset, api_key: str | None = None, timeout: float = 30.0):
        self.url, self.device = url.rstrip("/"), device
        self.index = self  # the generator looks products up as recommender.index.product(id)
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.timeout = timeout
        self.sent: list[dict[str, Any]] = []

    def product(self, product_id: str) -> Product:
        return self.device.product(product_id)

    def user_history(self, user_id: str) -> list[tuple[str, Any]]:
        h = self.device.history(user_id)
        return list(zip(h["product_id"].astype(str), h["timestamp"], strict=True))

    def recommend(self, items: Sequence[tuple[str, Any]] | None, text: str | None = None,
                  filters: Filters | None = None, k: int = 3) -> list[Recommendation]:
        if text or (filters is not None and filters != Filters()):
            raise ValueError("on-device mode sends product ids only: no free text, no filters")
        body = {"history": [str(pid) for pid, _ in items or []], "n": k, "narrate": False}
        self.sent.append(body)
        try:
            r = httpx.post(f"{self.url}/v1/recommendations", json=body, headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise ServerError(f"cannot reach the recommendation service at {self.url} ({e}); start it with "
                              f"`recnarr serve`") from e
        if r.status_code != 200:
            raise ServerError(f"{self.url}/v1/recommendations answered {r.status_code}: {r.text[:300]}")
        out = []
        for card in r.json()["products"]:
            product = Product(**{f: card[f] for f in PRODUCT_FIELDS if f in card})
            reasons = [Reason(x["product_id"], x["title"], x["similarity"], x.get("copurchase_count", 0),
                              x.get("kind", "similar"), x.get("contribution", 0.0))
                       for x in card.get("reasons", [])]
            # only the final score comes back; its parts stay on the server
            out.append(Recommendation(product, card["score"], card["score"], 0.0, 0.0, reasons))
        return out


def device_dataset(catalog: pd.DataFrame, user_id: str, name: str | None,
                   purchases: Sequence[tuple[str, Any]]) -> Dataset:
    """What one device holds: the public catalog snapshot and one customer's own purchases."""
    known = set(catalog["id"].astype(str))
    unknown = [pid for pid, _ in purchases if pid not in known]
    if unknown:
        raise ValueError(f"purchases name products the catalog snapshot lacks: {unknown[:5]}")
    users = pd.DataFrame({"id": [user_id], "name": [name], "segment": [None], "demographics": [{}]})
    inter = pd.DataFrame({"user_id": user_id, "product_id": [p for p, _ in purchases], "event": "purchase",
                          "quantity": 1, "rating": None,
                          "timestamp": pd.to_datetime([t for _, t in purchases], utc=True)})
    return Dataset("device", catalog, users, inter)


def read_purchases(path: str | Path) -> list[tuple[str, Any]]:
    """A device's purchase list: JSON `[{"product_id": ..., "timestamp": ...}, ...]` (timestamp optional)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON purchase list ({e})") from e
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: expected a non-empty JSON list of purchases")
    out = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not isinstance(row.get("product_id"), str):
            raise ValueError(f"{path}: purchase {i}: expected an object with a string product_id")
        out.append((row["product_id"], row.get("timestamp")))
    return out


def narrate_on_device(device: Dataset, user_id: str, server: str, engine: Engine, cfg: RunConfig,
                      n: int = 3, style: str = "warm", api_key: str | None = None) -> tuple[Result, RemoteRetriever]:
    remote = RemoteRetriever(server, device, api_key)
    gen = NarrativeGenerator(device, remote, engine, cfg.generation, {"mode": "on-device"}, cfg.narratives.max_history)
    return gen.recommend(user_id=user_id, n=n, style=style), remote
