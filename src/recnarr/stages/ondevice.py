"""`recnarr ondevice`: a customer's narrative written locally with the GGUF model; the server is sent
product ids only (what crosses the network is described in recnarr.inference.ondevice)."""

from __future__ import annotations

import json
import time

from recnarr.config import RunConfig
from recnarr.inference.engine import Engine
from recnarr.inference.ondevice import device_dataset, narrate_on_device, read_purchases


def ondevice(cfg: RunConfig, user: str | None = None, purchases: str | None = None, server: str | None = None,
             gguf: str | None = None, n: int = 3, style: str = "warm", backend: str = "llamacpp") -> int:
    """`recnarr ondevice`: a customer's narrative written locally; the server sees product ids only."""
    from recnarr.data.run_data import load_dataset
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.serving_model import load_serving_model

    if (user is None) == (purchases is None):
        raise ValueError("give --user ID (a demo customer of the run's dataset) or --purchases FILE (JSON)")
    ds = load_dataset(cfg)  # the public catalog; with --user also the stand-in for that device's own data
    if user is not None:
        if user not in set(ds.users["id"].astype(str)):
            raise ValueError(f"unknown customer {user!r} in {cfg.layout.data}")
        h = ds.history(user)
        items = list(zip(h["product_id"].astype(str), h["timestamp"], strict=True))
        name = ds.users.set_index(ds.users["id"].astype(str)).loc[user, "name"]
        device = device_dataset(ds.products, user, name if isinstance(name, str) else None, items)
    else:
        user = "device-user"
        device = device_dataset(ds.products, user, None, read_purchases(purchases))
    cfg.generation.backend = backend
    model, info = load_serving_model(cfg, gguf, cfg.quantize.mode)
    url = server or f"http://{cfg.serve.host}:{cfg.serve.port}"
    t = time.perf_counter()
    result, remote = narrate_on_device(device, user, url, Engine(model, get_tokenizer()), cfg, n, style)
    print(f"model on this device: {info['path']} ({info['quantization']}, backend {info['backend']})")
    print(f"history on this device: {len(device.interactions)} purchases (not sent)")
    for body in remote.sent:
        print(f"sent to {url}/v1/recommendations: {json.dumps(body)}")
    print(f"received: {len(result.products)} product cards")
    for p in result.products:
        print(f"  - {p.title}  ${p.price:,.2f}")
    nar = result.narrative
    if nar is not None:
        flag = "verified" if nar.verified and not nar.fallback else "FALLBACK" if nar.fallback else "UNVERIFIED"
        print(f"narrative (written on this device) [{flag}, {nar.attempts} attempt(s)]:\n  {nar.text}")
    print(f"total {1000 * (time.perf_counter() - t):.0f} ms")
    return 0
