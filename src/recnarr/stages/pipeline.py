"""`recnarr pipeline --preset P`: every stage end to end through artifact folders.

    data -> corpus -> pretrain -> index -> narratives -> finetune -> merge -> quantize -> gguf -> evaluate -> report

Each stage runs a CLI command (`Stage.command`, its name in `recnarr.cli.COMMANDS`, the one table of
targets) and names its output through the run's layout.

A stage is skipped when its output exists and its fingerprint (the config sections it reads plus the
fingerprints of the stages it reads from) is the one recorded in `<run>/pipeline.json` when it last
ran; change a setting and exactly the stages downstream of it run again.

Training stages (`resumable`) continue an interrupted run: before a stage starts, its fingerprint is
recorded as `running`; rerunning the pipeline after a kill finds the same fingerprint there and lets
the stage resume its last checkpoint (`training.resume`). A stage whose inputs changed since it last
finished starts over (its old checkpoints belong to other settings); `--fresh` starts every training
stage over.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recnarr.cli import command, load_target
from recnarr.config import RunConfig, to_dict
from recnarr.layout import LAST, RunLayout
from recnarr.model.gguf_export import gguf_filename


@dataclass(frozen=True)
class Stage:
    name: str
    command: str  # the CLI command that runs it ("data load"), called with (cfg, **kwargs)
    output: Callable[[RunLayout, RunConfig], Path]  # a file that exists once the stage has run
    sections: tuple[str, ...]  # config sections the stage reads
    after: tuple[str, ...] = ()  # stages whose outputs it reads
    kwargs: tuple[tuple[str, Any], ...] = ()
    resumable: bool = False  # a training stage: takes fresh=, continues its last checkpoint otherwise


STAGES: list[Stage] = [
    Stage("data", "data load", lambda r, c: r.data / "manifest.json", ("data",)),
    Stage("corpus", "data corpus", lambda r, c: r.corpus / "manifest.json", ("corpus",)),
    Stage("pretrain", "pretrain", lambda r, c: r.pretrain / LAST / "config.json", ("model", "pretrain"), ("corpus",),
          resumable=True),
    Stage("index", "index", lambda r, c: r.index / "manifest.json", ("index",), ("data",)),
    Stage("narratives", "data narratives", lambda r, c: r.narratives / "train.jsonl", ("narratives", "retrieval"),
          ("data", "index")),
    Stage("finetune", "finetune", lambda r, c: r.finetune(c.finetune.method) / LAST / "meta.json", ("finetune",),
          ("pretrain", "narratives"), resumable=True),
    Stage("merge", "merge", lambda r, c: r.merged / "config.json", (), ("finetune",)),
    Stage("quantize", "quantize", lambda r, c: r.serving(c.quantize.mode) / "config.json", ("quantize",),
          ("merge",)),
    Stage("gguf", "gguf", lambda r, c: r.export("gguf") / gguf_filename(c.quantize.gguf), ("quantize",), ("merge",)),
    Stage("evaluate", "evaluate narratives", lambda r, c: r.eval / "narratives.json", ("eval", "generation"),
          ("quantize",)),
    Stage("report", "report", lambda r, c: r.report / "index.html", (), ("evaluate",)),
]


def _output(stage: Stage, cfg: RunConfig) -> Path:
    return stage.output(cfg.layout, cfg)


def fingerprints(cfg: RunConfig) -> dict[str, str]:
    full = to_dict(cfg)
    out: dict[str, str] = {}
    for s in STAGES:
        blob = json.dumps({"sections": {k: full[k] for k in s.sections},
                           "upstream": [out[u] for u in s.after]}, sort_keys=True)
        out[s.name] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out


def _call(name: str, cfg: RunConfig, **kwargs: Any) -> Any:
    return load_target(command(name).target)(cfg, **kwargs)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)  # a kill mid-write leaves the old state, never half of one


def pipeline(cfg: RunConfig, only: list[str] | None = None, until: str | None = None, force: bool = False,
             fresh: bool = False, replace_data: bool = False, **_: Any) -> dict[str, str]:
    """Run the stages in order, skipping those that are up to date. Returns {stage: ran|skipped}."""
    state_path = cfg.layout.pipeline_state
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
        _call(stage.command, cfg, **kwargs)
        state[stage.name] = fp
        running.pop(stage.name, None)
        _write_state(state_path, state)
        outcome[stage.name] = f"ran in {time.perf_counter() - t:.0f}s"
        if stage.name == until:
            break
    print("pipeline: " + ", ".join(f"{k} {v}" for k, v in outcome.items()))
    return outcome
