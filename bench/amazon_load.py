"""Loading an Amazon Reviews 2023 category: recnarr's streamed, validated adapter vs pandas reading the
same two JSONL files with no validation at all (`pd.read_json(lines=True)`), side by side in one run.

The files are synthetic, in the released format (the fixture's products repeated under new ids, reviews
of random users and products), so any size can be tried offline. Each loader runs in its own process;
peak memory is that process's max RSS.

    PYTHONPATH=bench:src .venv/bin/python bench/amazon_load.py --reviews 500000 --products 20000

Measured here (2 shared cores, 500k reviews + 20k products, 199 MB, one run):

    | loader                                   | seconds | reviews/s | peak RSS |
    |------------------------------------------|--------:|----------:|---------:|
    | recnarr (every field validated, chunks)  |   11.65 |    42,926 |   414 MB |
    | pandas read_json (nothing validated)     |    9.31 |    53,690 | 1,742 MB |
    | recnarr before chunking (separate run)   |   ~10.0 |   ~50,000 |   715 MB |

So ~0.8x pandas' speed with every value checked, at a quarter of its memory; a 700k-review category
(All_Beauty) loads in ~15 s. The largest categories (tens of millions of reviews) need tens of GB in
any pandas frame: cut them first (`data.max_products` applies after the load).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures" / "amazon2023"

LOADERS = {
    "recnarr": "from recnarr.data.amazon2023 import load_amazon2023 as f; ds = f(META, REVIEWS); "
               "n = len(ds.interactions)",
    "pandas": "import pandas as pd; p = pd.read_json(META, lines=True); r = pd.read_json(REVIEWS, lines=True); "
              "n = len(r)",
}


def write_files(folder: Path, n_reviews: int, n_products: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    base = [json.loads(line) for line in (FIXTURE / "meta_Home_and_Kitchen.jsonl").read_text().splitlines()]
    meta, reviews = folder / "meta_Synthetic.jsonl", folder / "Synthetic.jsonl"
    with meta.open("w") as f:
        for i in range(n_products):
            m = {**base[i % len(base)], "parent_asin": f"B{i:09d}"}
            m["title"] = f"{m['title']} Model {i}"
            f.write(json.dumps(m) + "\n")
    with reviews.open("w") as f:
        for i in range(n_reviews):
            asin = f"B{rng.randrange(n_products):09d}"
            f.write(json.dumps({"rating": float(rng.randint(1, 5)), "title": "Works as described",
                                "text": "Sturdy and easy to clean. Would buy again. " * 3, "images": [],
                                "asin": asin, "parent_asin": asin, "user_id": f"AG{rng.randrange(n_reviews // 5):026d}",
                                "timestamp": 1_600_000_000_000 + i * 1000, "helpful_vote": 0,
                                "verified_purchase": rng.random() < 0.9}) + "\n")
    return meta, reviews


def run(loader: str, meta: Path, reviews: Path) -> dict:
    code = (f"import json, resource, time; META, REVIEWS = {str(meta)!r}, {str(reviews)!r}; t = time.perf_counter(); "
            f"{LOADERS[loader]}; print(json.dumps({{'seconds': time.perf_counter() - t, 'rows': n, "
            f"'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviews", type=int, default=200_000)
    ap.add_argument("--products", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        meta, reviews = write_files(Path(tmp), args.reviews, args.products)
        mb = (meta.stat().st_size + reviews.stat().st_size) / 1e6
        print(f"{args.reviews:,} reviews + {args.products:,} products, {mb:.0f} MB, written in "
              f"{time.perf_counter() - t:.1f} s")
        res = {name: run(name, meta, reviews) for name in LOADERS}
    print("| loader | seconds | reviews/s | peak RSS MB |\n|---|---:|---:|---:|")
    for name, r in res.items():
        print(f"| {name} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | {r['rss_mb']:,.0f} |")
    ratio = res["pandas"]["seconds"] / res["recnarr"]["seconds"]
    print(f"recnarr / pandas speed: {ratio:.2f}x (pandas validates nothing; recnarr checks every field)")
    print(json.dumps({"bench": "amazon_load", "reviews": args.reviews, "recnarr_s": round(res["recnarr"]["seconds"], 2),
                      "pandas_s": round(res["pandas"]["seconds"], 2), "ratio": round(ratio, 2),
                      "recnarr_rss_mb": round(res["recnarr"]["rss_mb"]), "pandas_rss_mb": round(res["pandas"]["rss_mb"])}))


if __name__ == "__main__":
    main()
