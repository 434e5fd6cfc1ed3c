"""`recnarr evaluate retrieval|narratives|fairness`: each writes its tables to `<run>/eval/` (and MLflow).

What each measures is described in its library module: recnarr.evaluation.retrieval, .narratives, .fairness.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from recnarr.config import RunConfig, to_dict
from recnarr.data.examples import load_examples
from recnarr.data.narratives import NarrativeRecord
from recnarr.data.run_data import load_dataset
from recnarr.evaluation import retrieval
from recnarr.evaluation.audit import Auditor
from recnarr.evaluation.fairness import NAMES, THRESHOLDS, Swap, evaluate_dataset, serving_engine
from recnarr.evaluation.fairness import format_tables as fairness_tables
from recnarr.evaluation.narratives import evaluate_system, find_systems, user_purchases
from recnarr.evaluation.narratives import format_tables as narrative_tables
from recnarr.evaluation.tracking import log_eval_run
from recnarr.inference.generator import NarrativeGenerator
from recnarr.inference.grounding import FactBase, ground


def write_tables(cfg: RunConfig, name: str, results: dict[str, Any], md: str) -> list[Path]:
    """`<run>/eval/<name>.json` (the results) and `<name>.md` (their tables, printed too)."""
    out = cfg.layout.eval
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{name}.json", out / f"{name}.md"]
    files[0].write_text(json.dumps(results, indent=2, default=str))
    files[1].write_text(md)
    print("\n" + md)
    return files


def evaluate_retrieval(cfg: RunConfig, tune: bool = False, **_: Any) -> dict[str, Any]:
    """`recnarr evaluate retrieval` (see recnarr.evaluation.retrieval): the comparison on every dataset of
    `eval.retrieval_datasets` -> `<run>/eval/retrieval.{json,md}`. tune: first choose each dataset's blend
    weights on its rolling validation folds, whose targets all precede the test folds (`tune_dataset`), report the test table with them, and print them as
    `retrieval.per_dataset` for the config."""
    if tune:
        chosen = {}
        for name in cfg.eval.retrieval_datasets:
            ds = retrieval.load_eval_dataset(name, cfg)
            chosen[ds.name], _ = retrieval.tune_dataset(ds, retrieval.index_for(ds, cfg), cfg)
        cfg.retrieval.per_dataset = {**cfg.retrieval.per_dataset, **chosen}
        print("chosen on validation (retrieval.per_dataset): " + json.dumps(chosen))
    results: dict[str, Any] = {"k": cfg.eval.k, "retrieval_config": vars(cfg.retrieval).copy(), "datasets": []}
    for name in cfg.eval.retrieval_datasets:
        ds = retrieval.load_eval_dataset(name, cfg)
        results["datasets"].append(retrieval.evaluate_dataset(ds, retrieval.index_for(ds, cfg), cfg))
    files = write_tables(cfg, "retrieval", results, retrieval.format_table(results, cfg.eval.k))
    print(f"-> {', '.join(map(str, files))}")
    return results


def evaluate_narratives(cfg: RunConfig, only: list[str] | None = None, **_: Any) -> dict[str, Any]:
    """`recnarr evaluate narratives` (see recnarr.evaluation.narratives). `only`: system keys to run (the
    others show as "not run")."""
    folder = cfg.layout.narratives
    examples = load_examples(folder, "test")[: cfg.eval.narrative_examples]
    if not examples:
        raise ValueError(f"{folder / 'test.jsonl'} holds no examples: rerun `recnarr data narratives`")
    ds = load_dataset(cfg)
    facts = FactBase(ds.products)
    purchases = user_purchases(ds)
    records = [NarrativeRecord.from_json(ex["record"]) for ex in examples]
    refs = [ground(ex["target"], rec).text for ex, rec in zip(examples, records, strict=True)]
    auditor = Auditor(ds, cfg.narratives.min_support)
    gen = NarrativeGenerator(ds, None, None, cfg.generation, {"stage": "evaluate narratives"}, cfg.narratives.max_history)
    systems = find_systems(cfg)
    results: dict[str, Any] = {
        "run_dir": str(cfg.run_dir), "split": "test", "examples": len(examples),
        "generation": to_dict(cfg.generation), "seed": cfg.eval.seed, "systems": {}}
    for s in systems:
        entry: dict[str, Any] = {"name": s.name, "status": s.status, "source": s.source, "note": s.note}
        if s.status == "ok" and only and s.key not in only:
            entry.update(status="not run", note=f"left out by --only ({', '.join(only)})")
        elif s.status == "ok":
            print(f"evaluate narratives: {s.name} ({s.source}) on {len(examples)} test examples", flush=True)
            try:
                entry.update(evaluate_system(s, gen, examples, records, refs, facts, purchases, cfg, auditor))
            except Exception as e:  # noqa: BLE001 - one broken system must not hide the others; it is shown
                entry.update(status="failed", note=f"{type(e).__name__}: {e}")
                print(f"  failed: {entry['note']}", flush=True)
        results["systems"][s.key] = entry
    files = write_tables(cfg, "narratives", results, narrative_tables(results))
    print(f"-> {', '.join(map(str, files))}")
    flat = {f"{k}.{m}": v for k, e in results["systems"].items() for m, v in e.get("metrics", {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
    log_eval_run(cfg, "evaluate-narratives", flat, files)
    return results


def evaluate_fairness(cfg: RunConfig, **_: Any) -> dict[str, Any]:
    """`recnarr evaluate fairness` (see recnarr.evaluation.fairness). Writes `<run>/eval/fairness.{json,md}`."""
    engine, engine_info = serving_engine(cfg)
    results: dict[str, Any] = {"run_dir": str(cfg.run_dir), "k": cfg.eval.k, "engine": engine_info,
                               "thresholds": THRESHOLDS,
                               "names": [asdict(Swap("name", n, n, {"gender": g, "origin": o})) for n, g, o in NAMES],
                               "datasets": [], "not_run": []}
    for name in cfg.eval.fairness_datasets:
        print(f"evaluate fairness: {name}", flush=True)
        try:
            results["datasets"].append(evaluate_dataset(name, cfg, engine))
        except (FileNotFoundError, ValueError) as e:
            results["not_run"].append({"dataset": name, "reason": f"{type(e).__name__}: {e}"})
            print(f"  not run: {e}", flush=True)
    files = write_tables(cfg, "fairness", results, fairness_tables(results))
    failed = [c for d in results["datasets"] for c in d["checks"] if c["result"] == "FAIL"]
    print(f"{len(failed)} check(s) failed" + (": " + "; ".join(f"{c['dataset']}: {c['check']}" for c in failed)
                                              if failed else ""))
    print(f"-> {', '.join(map(str, files))}")
    flat: dict[str, float] = {}
    for d in results["datasets"]:
        for m, e in d["exposure"].items():
            flat.update({f"{d['dataset']}.{m}.{k}": v for k, v in e.items() if isinstance(v, float)})
        flat[f"{d['dataset']}.checks_failed"] = float(sum(c["result"] == "FAIL" for c in d["checks"]))
    log_eval_run(cfg, "evaluate-fairness", flat, files)
    return results
