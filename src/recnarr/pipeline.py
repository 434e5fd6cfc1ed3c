"""`recnarr pipeline --preset P`: every stage end to end through artifact folders, and `recnarr demo`.

data -> corpus -> pretrain -> index -> narratives -> finetune -> merge -> quantize -> gguf -> evaluate ->
report.
A stage is skipped when its output exists and its fingerprint (the config sections it reads plus the
fingerprints of the stages it reads from) is the one recorded in `<run>/pipeline.json` when it last
ran; change a setting and exactly the stages downstream of it run again.

Training stages (`resumable`) continue an interrupted run: before a stage starts, its fingerprint is
recorded as `running`; rerunning the pipeline after a kill finds the same fingerprint there and lets
the stage resume its last checkpoint (`training.resume`). A stage whose inputs changed since it last
finished starts over (its old checkpoints belong to other settings); `--fresh` starts every training
stage over.

`recnarr demo` is the README's main job: data prepared, a model available (the shipped reference
model under `models/` when it exists, else this preset's pipeline trains one), index built, then
narratives for three real customers, with timings.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recnarr.config import RunConfig, to_dict


@dataclass(frozen=True)
class Stage:
    name: str
    target: str  # "module:function", called with (cfg, **kwargs)
    output: str  # a file under the run folder that exists once the stage has run
    sections: tuple[str, ...]  # config sections the stage reads
    after: tuple[str, ...] = ()  # stages whose outputs it reads
    kwargs: tuple[tuple[str, Any], ...] = ()
    resumable: bool = False  # a training stage: takes fresh=, continues its last checkpoint otherwise


STAGES: list[Stage] = [
    Stage("data", "recnarr.data.stages:load", "data/manifest.json", ("data",)),
    Stage("corpus", "recnarr.data.stages:corpus", "corpus/manifest.json", ("corpus",)),
    Stage("pretrain", "recnarr.training.stages:pretrain", "pretrain/last/config.json", ("model", "pretrain"), ("corpus",),
          resumable=True),
    Stage("index", "recnarr.retrieval.stages:index", "index/manifest.json", ("index",), ("data",)),
    Stage("narratives", "recnarr.data.examples:narratives", "narratives/train.jsonl", ("narratives", "retrieval"),
          ("data", "index")),
    Stage("finetune", "recnarr.training.finetune:finetune", "finetune/{method}/last/meta.json", ("finetune",),
          ("pretrain", "narratives"), resumable=True),
    Stage("merge", "recnarr.training.finetune:merge", "serving/merged/config.json", (), ("finetune",)),
    Stage("quantize", "recnarr.evaluation.quantization:quantize_command", "serving/{mode}/config.json", ("quantize",),
          ("merge",)),
    Stage("gguf", "recnarr.model.gguf_export:gguf_stage", "export/gguf/model-{gguf}.gguf", ("quantize",), ("merge",)),
    Stage("evaluate", "recnarr.evaluation.narratives:evaluate_narratives", "eval/narratives.json",
          ("eval", "generation"), ("quantize",)),
    Stage("report", "recnarr.evaluation.report:report", "report/index.html", (), ("evaluate",)),
]


def _output(stage: Stage, cfg: RunConfig) -> Path:
    return Path(cfg.run_dir) / stage.output.format(method=cfg.finetune.method, mode=cfg.quantize.mode,
                                                  gguf=cfg.quantize.gguf)


def _state_path(cfg: RunConfig) -> Path:
    return Path(cfg.run_dir) / "pipeline.json"


def fingerprints(cfg: RunConfig) -> dict[str, str]:
    full = to_dict(cfg)
    out: dict[str, str] = {}
    for s in STAGES:
        blob = json.dumps({"sections": {k: full[k] for k in s.sections},
                           "upstream": [out[u] for u in s.after]}, sort_keys=True)
        out[s.name] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out


def _call(target: str, cfg: RunConfig, **kwargs: Any) -> Any:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(cfg, **kwargs)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)  # a kill mid-write leaves the old state, never half of one


def pipeline(cfg: RunConfig, only: list[str] | None = None, until: str | None = None, force: bool = False,
             fresh: bool = False, replace_data: bool = False, **_: Any) -> dict[str, str]:
    """Run the stages in order, skipping those that are up to date. Returns {stage: ran|skipped}."""
    state_path = _state_path(cfg)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    running: dict[str, str] = state.setdefault("running", {})
    prints = fingerprints(cfg)
    outcome: dict[str, str] = {}
    for stage in STAGES:
        if only and stage.name not in only:
            continue
        out = _output(stage, cfg)
        fp = prints[stage.name]
        if not force and out.exists() and state.get(stage.name) == fp:
            print(f"[{stage.name}] up to date ({out})")
            outcome[stage.name] = "skipped"
            continue
        kwargs = dict(stage.kwargs)
        if stage.name == "data":
            kwargs["replace_data"] = replace_data  # the one stage that may overwrite a run's data
        if stage.resumable:
            interrupted = running.get(stage.name) == fp
            changed = stage.name in state and state[stage.name] != fp
            kwargs["fresh"] = fresh or force or (changed and not interrupted)
        print(f"[{stage.name}] {'resuming' if kwargs.get('fresh') is False and out.exists() else 'running'} ...",
              flush=True)
        running[stage.name] = fp
        _write_state(state_path, state)
        t = time.perf_counter()
        _call(stage.target, cfg, **kwargs)
        state[stage.name] = fp
        running.pop(stage.name, None)
        _write_state(state_path, state)
        outcome[stage.name] = f"ran in {time.perf_counter() - t:.0f}s"
        if stage.name == until:
            break
    print("pipeline: " + ", ".join(f"{k} {v}" for k, v in outcome.items()))
    return outcome


# ---------------------------------------------------------------------- the demo (README's main job)
def demo(cfg: RunConfig, customers: int = 3, checkpoint: str | None = None, replace_data: bool = False,
         **_: Any) -> int:
    """Prepare data and index, find (or train) a model, and print narratives for real customers."""
    from recnarr.data.stages import prepare
    from recnarr.inference.generator import load_generator
    from recnarr.inference.serving_model import SHIPPED, find_checkpoint

    prepare(cfg, replace_data=replace_data)
    pipeline(cfg, only=["index"])
    try:
        path = find_checkpoint(cfg, checkpoint, cfg.quantize.mode)
    except FileNotFoundError:
        print(f"no trained model at {SHIPPED} or in {cfg.run_dir}: training the {cfg.run_dir} pipeline (CPU)")
        pipeline(cfg, until="quantize")
        path = find_checkpoint(cfg, checkpoint, cfg.quantize.mode)
    t = time.perf_counter()
    gen = load_generator(cfg, path)
    print(f"\nserving model: {path} ({gen.versions['model'].get('quantization')}), loaded in {time.perf_counter() - t:.1f}s")
    inter = gen.dataset.interactions
    counts = inter.groupby("user_id").size().sort_values(ascending=False)
    names = gen.users["name"]
    for uid in list(counts.index[: customers * 7 : 7])[:customers]:
        r = gen.recommend(user_id=str(uid), n=3, style="warm")
        n = r.narrative
        print(f"\n=== {names.get(uid, uid)} ({uid}), {counts[uid]} past purchases")
        for p in r.products:
            off = f", {round(p.discount * 100)}% off" if p.discount else ""
            print(f"  - {p.title}  ${p.price:,.2f}{off}")
        flag = "verified" if n.verified and not n.fallback else ("FALLBACK (verifier rejected the model's text)"
                                                               if n.fallback else "UNVERIFIED")
        print(f"  narrative [{flag}, {n.attempts} attempt(s)]:\n    {n.text}")
        tm = r.timings
        print(f"  timings: retrieval {tm['retrieval'] * 1000:.0f} ms, generate {tm['generate'] * 1000:.0f} ms, "
              f"verify {tm['verify'] * 1000:.0f} ms, total {tm['total'] * 1000:.0f} ms "
              f"({r.tokens['generated']} tokens)")
    print("\nnext: `.venv/bin/recnarr serve --preset P` and `.venv/bin/recnarr demo-ui --preset P` (see README)")
    return 0
