"""`recnarr batch` over every customer of Superstore and MovieLens, killed with SIGKILL halfway and rerun,
side by side with an uninterrupted run: a row per customer, the same final table (timings aside), the
rate, and the independent audit (`evaluation.audit`, which shares no code with the verifier) of every
narrative against the raw tables.

    PYTHONPATH=bench:src .venv/bin/python bench/batch_all.py [--datasets superstore movielens] [--kill-after 6]

Each dataset gets a run folder under --root (data load + index once, then the shipped model); "home" is
the home-goods shop of the tests (loaded by its column map), a catalog the model never saw. Measured here
(2 shared cores, part size 64, 64 in flight, cpu-small preset, shipped int8 model, one run, 2026-12-08):

    | dataset    | customers | resumed == uninterrupted | rate (narratives/s) | fallback | audit false | ready  | top closer |
    |------------|----------:|:------------------------:|--------------------:|---------:|------------:|-------:|-----------:|
    | superstore |       793 | yes (killed after 6/13)  |                50.6 |        1 |           0 | 100.0% |       2.4% |
    | movielens  |       943 | yes (killed after 6/15)  |                41.2 |        0 |           0 | 100.0% |       9.2% |
    | home       |         5 | yes (killed after 1/1)   |                   - |        0 |           0 | 100.0% |     3 of 5 |

    faithfulness: cited a past item 203 / 942 / 0; cited among the evidence 100%, = top contributor 100%;
    the product leaves the top 3 without it 97.0% / 27.1%; a product fact where the record has one
    98.8% / 100% / 100%.

Beside the audit, every narrative gets the faithfulness measures (`faithfulness`) and the send-readiness check (`evaluation.readiness`: what a copywriter
would refuse to send; independent of the writer's grammar): the ready share, the commonest closing
sentence's share, the distinct sentence frames, distinct-2 and the count of each defect.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RECNARR = [sys.executable, "-m", "recnarr.cli"]
# a catalog shaped unlike both, never trained on: the home-and-fashion shop of the tests, by its column map
HOME = REPO / "tests" / "inference" / "fixtures" / "home"
DATA = {"home": ["data.dataset=custom", f"data.catalog={HOME / 'products.csv'}",
                 f"data.interactions={HOME / 'orders.jsonl'}", f"data.users={HOME / 'customers.jsonl'}",
                 f"data.column_map={HOME / 'columns.yaml'}", "data.min_history=1"]}


def sh(args: list[str], log: Path) -> None:
    with log.open("w") as f:
        subprocess.run(args, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)


def table(folder: Path) -> pd.DataFrame:
    df = pd.read_parquet(folder).drop(columns=["timings"]).sort_values("user_id").reset_index(drop=True)
    df["product_ids"] = df["product_ids"].map(lambda v: json.dumps(list(v)))
    return df


PRODUCT_FACTS = ("kind", "a_kind", "purpose", "fact", "feature", "year")  # slots that say what the product is


def faithfulness(run: Path, ds, whole: pd.DataFrame) -> dict:
    """Is the reason given the one that made the pick? Per narrative that cites a past item: is it among
    the product's evidence (`reasons`), is it the top contributor, and does the product leave the list
    when that item is taken out of the history and the same recommender re-ranks (counterfactual, as
    ACCENT and CountER judge an explanation)? And: where the record holds a product fact (a kind the
    title does not say, a purpose, the catalog's words, an attribute, a year), is one stated?"""
    from dataclasses import replace as dc_replace

    from recnarr.config import load_config
    from recnarr.data.claims import slot_values
    from recnarr.data.narratives import NarrativeRecord
    from recnarr.data.schema import product_from_row
    from recnarr.retrieval.recommender import Filters, Recommender

    cfg = load_config("cpu-small", [f"run_dir={run}"])
    rec = Recommender.from_folder(cfg.layout.index, ds, cfg.retrieval)
    products = {str(r["id"]): product_from_row(r) for r in ds.products.to_dict("records")}
    cited_rows = in_evidence = top = left = 0
    facts_possible = facts_said = 0
    for r in whole.itertuples():
        cites = json.loads(r.citations)
        cards = json.loads(r.products)
        if r.narrated_product in products:
            values = slot_values(NarrativeRecord(product=products[r.narrated_product], history=[]))
            if any(n in values for n in PRODUCT_FACTS):
                facts_possible += 1
                facts_said += any(c["fact"] in PRODUCT_FACTS for c in cites)
        past = [c["source"].split(":")[1].split(".")[0] for c in cites if re.fullmatch(r"past\d+", c["fact"])]
        if not past or not cards:
            continue
        cited_rows += 1
        evidence = [x["product_id"] for x in cards[0]["reasons"]]
        in_evidence += set(past) <= set(evidence)
        top += bool(evidence) and past[0] == evidence[0]
        history = [(p, t) for p, t in rec.user_history(r.user_id) if p != past[0]]
        seen = tuple(sorted(rec.seen(r.user_id)))
        again = rec.recommend(history or None, filters=dc_replace(Filters(), exclude_ids=seen), k=len(cards))
        left += r.narrated_product not in {x.product.id for x in again}
    def share(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {"cited": cited_rows, "cited_in_evidence": share(in_evidence, cited_rows),
            "cited_is_top": share(top, cited_rows), "counterfactual_leaves": share(left, cited_rows),
            "product_fact": share(facts_said, facts_possible), "product_fact_possible": facts_possible}


def one(name: str, root: Path, kill_after: int, part_size: int) -> dict:
    from recnarr.data.schema import Dataset
    from recnarr.evaluation import readiness
    from recnarr.evaluation.audit import Auditor

    run = root / name
    common = ["--preset", "cpu-small", f"run_dir={run}", *DATA.get(name, [f"data.dataset={name}"])]
    if not (run / "index" / "manifest.json").exists():
        sh([*RECNARR, "data", "load", *common], root / f"{name}-load.log")
        sh([*RECNARR, "index", *common], root / f"{name}-index.log")
    batch = [*RECNARR, "batch", *common, "--users", "all", "--part-size", str(part_size)]
    for out in ("killed", "whole"):
        subprocess.run(["rm", "-rf", str(run / out)], check=True)
    proc = subprocess.Popen([*batch, "--out", str(run / "killed")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=REPO)
    while len(list((run / "killed").glob("part-*.parquet"))) < kill_after and proc.poll() is None:
        time.sleep(0.2)
    if proc.poll() is None:  # a small catalog may finish before the kill
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(list((run / "killed").glob("part-*.parquet")))
    sh([*batch, "--out", str(run / "killed")], root / f"{name}-resume.log")
    t0 = time.perf_counter()
    sh([*batch, "--out", str(run / "whole")], root / f"{name}-whole.log")
    seconds = time.perf_counter() - t0
    # the job's own rate (its last progress line: generation only), beside the wall time with start-up
    rates = re.findall(r"([\d.]+) narratives/s", (root / f"{name}-whole.log").read_text())
    resumed, whole = table(run / "killed"), table(run / "whole")
    ds = Dataset.load(run / "data")
    customers = set(ds.interactions["user_id"].astype(str))
    auditor = Auditor(ds)
    false = [(r.user_id, r.narrative, str(c)) for r in whole.itertuples()
             for c in auditor.audit(r.narrative, r.narrated_product, r.user_id)]
    for f in false[:5]:
        print("  false:", f)
    # send-readiness of the same rows: the narrated product's raw row, the titles of all the customer's items
    products = {str(p["id"]): p for p in ds.products.to_dict("records")}
    seen = ds.interactions.assign(user_id=ds.interactions["user_id"].astype(str),
                                  product_id=ds.interactions["product_id"].astype(str))
    past = {u: [products[i]["title"] for i in dict.fromkeys(ids) if i in products]
            for u, ids in seen.groupby("user_id")["product_id"]}
    texts = [r.narrative if isinstance(r.narrative, str) else "" for r in whole.itertuples()]
    checked = [readiness.check(t, products.get(str(r.narrated_product), {}), past.get(str(r.user_id), []))
               for t, r in zip(texts, whole.itertuples(), strict=True)]
    ready = readiness.summarize(texts, checked)
    faithful = faithfulness(run, ds, whole)
    return {**faithful, "dataset": name, "customers": len(customers), "rows": len(whole),
            "every_customer_once": sorted(whole["user_id"]) == sorted(customers),
            "resumed_equals_whole": bool(resumed.equals(whole)), "killed_after_parts": killed_at,
            "parts": -(-len(customers) // part_size), "rate": float(rates[-1]) if rates else None,
            "rate_with_startup": round(len(whole) / seconds, 2),
            "verified": int(whole["verified"].sum()), "fallback": int(whole["fallback"].sum()),
            "audit_false_claims": len(false), "ready": ready["ready"],
            "top_closer_share": ready["top_closer"][1], "frames": ready["frames"],
            "distinct_2": ready["distinct_2"], "by_defect": ready["by_defect"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="*", default=["superstore", "movielens", "home"])
    ap.add_argument("--root", default="/tmp/recnarr-batch-all")
    ap.add_argument("--kill-after", type=int, default=6, help="parts written before the SIGKILL")
    ap.add_argument("--part-size", type=int, default=64)
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    res = [one(d, root, args.kill_after, args.part_size) for d in args.datasets]
    print("| dataset | cited | cited in evidence | cited = top contributor | leaves the list without it | "
          "product fact |\n|---|---:|---:|---:|---:|---:|")
    for r in res:
        print(f"| {r['dataset']} | {r['cited']} | {r['cited_in_evidence']} | {r['cited_is_top']} | "
              f"{r['counterfactual_leaves']} | {r['product_fact']} (of {r['product_fact_possible']}) |")
    print()
    print("| dataset | customers | rows | resumed == uninterrupted | rate (narratives/s) | verified | fallback | "
          "audit false | ready | top closer | frames | distinct-2 | defects |\n"
          "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in res:
        same = f"{'yes' if r['resumed_equals_whole'] else 'NO'} (killed after {r['killed_after_parts']}/{r['parts']})"
        defects = ", ".join(f"{d} {n}" for d, n in r["by_defect"].items() if n) or "none"
        print(f"| {r['dataset']} | {r['customers']} | {r['rows']} | {same} | {r['rate']} | {r['verified']} | "
              f"{r['fallback']} | {r['audit_false_claims']} | {r['ready']:.1%} | {r['top_closer_share']:.1%} | "
              f"{r['frames']} | {r['distinct_2']:.3f} | {defects} |")
    print(json.dumps({"bench": "batch_all", **{f"{r['dataset']}_{k}": v for r in res for k, v in r.items()
                                              if k != "dataset"}}))


if __name__ == "__main__":
    main()
