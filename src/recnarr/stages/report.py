"""`recnarr report`: HTML + Markdown with plots, rebuilt from whatever artifacts the run has -> `<run>/report/`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from recnarr.config import RunConfig
from recnarr.evaluation.report import (
    Block,
    checkpoint_folders,
    loss_curve,
    plot_fairness,
    plot_losses,
    plot_narratives,
    read_json,
    render,
)
from recnarr.evaluation.tracking import log_eval_run


def report(cfg: RunConfig, **_: Any) -> Path:
    """`recnarr report`: build `<run>/report/` from whatever artifacts the run has (see recnarr.evaluation.report)."""
    run = cfg.layout.root
    out = cfg.layout.report
    plots = out / "plots"
    if plots.exists():
        shutil.rmtree(plots)  # plots of artifacts that are gone must not linger
    plots.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = []
    missing: list[tuple[str, str]] = []
    found: list[str] = []

    # training
    curves = {label: loss_curve(folder) for label, folder in checkpoint_folders(cfg).items()}
    if curves:
        plot_losses(curves, plots / "losses.png")
        blocks.append(("md", "## Training\n\n| stage | curve from | points (train / val) | note |\n|---|---|---:|---|\n"
                       + "\n".join(f"| {k} | {c['source']} | {len(c['train'])} / {len(c['val'])} | {c['note']} |"
                                   for k, c in curves.items())))
        blocks.append(("img", "losses.png", "Loss curves (train and validation)"))
        found.append("training checkpoints")
    else:
        missing.append(("training checkpoints", f"recnarr pretrain run_dir={run} && recnarr finetune run_dir={run}"))

    # narratives
    narr = read_json(cfg.layout.eval / "narratives.json")
    if narr:
        from recnarr.evaluation.narratives import format_tables as narrative_tables

        blocks.append(("md", "## Narrative quality vs baselines\n\n" + narrative_tables(narr).split("\n", 1)[1]))
        for f, caption in plot_narratives(narr, plots):
            blocks.append(("img", f, caption))
        # a model's narratives first (the fine-tuned one if it ran), the writer's only if no model ran
        preferred = ["finetuned", "scratch", "pretrained", *(k for k in narr["systems"] if k != "writer"), "writer"]
        key = next((k for k in preferred if narr["systems"].get(k, {}).get("samples")), None)
        if key:
            blocks.append(("md", f"## Example narratives for real test users ({narr['systems'][key]['name']})"))
            blocks.append(("examples", narr["systems"][key]["samples"]))
        found.append("eval/narratives.json")
    else:
        missing.append(("eval/narratives.json", f"recnarr evaluate narratives run_dir={run}"))

    # retrieval and quantization tables, as their stages wrote them
    retr = read_json(cfg.layout.eval / "retrieval.json")
    if retr:
        from recnarr.evaluation.retrieval import format_table

        blocks.append(("md", "## Retrieval (next-item prediction)\n\n```\n" + format_table(retr, retr.get("k", 10))
                       + "\n```"))
        found.append("eval/retrieval.json")
    else:
        missing.append(("eval/retrieval.json", f"recnarr evaluate retrieval run_dir={run}"))
    quant = cfg.layout.serving_root / "quantization.md"
    if quant.is_file():
        blocks.append(("md", "## Quantization\n\n" + quant.read_text()))
        found.append("serving/quantization.md")
    else:
        missing.append(("serving/quantization.md", f"recnarr merge run_dir={run} && recnarr quantize run_dir={run}"))

    # fairness
    fair = read_json(cfg.layout.eval / "fairness.json")
    if fair:
        from recnarr.evaluation.fairness import format_tables as fairness_tables

        checks = [c for d in fair["datasets"] for c in d["checks"]]
        failed = sum(c["result"] == "FAIL" for c in checks)
        blocks.append(("md", f"## Bias and fairness\n\n{len(checks)} checks: "
                       f"{sum(c['result'] == 'PASS' for c in checks)} pass, **{failed} fail**, "
                       f"{sum(c['result'] == 'not run' for c in checks)} not run.\n\n"
                       + fairness_tables(fair).split("\n", 1)[1]))
        for f, caption in plot_fairness(fair, plots):
            blocks.append(("img", f, caption))
        found.append("eval/fairness.json")
    else:
        missing.append(("eval/fairness.json", f"recnarr evaluate fairness run_dir={run}"))

    summary = (f"Run `{run}`. Built from artifacts only (nothing retrained). Found: {', '.join(found) or 'nothing'}.")
    if missing:
        summary += "\n\n### Missing artifacts\n\n| artifact | command that makes it |\n|---|---|\n" + "\n".join(
            f"| {a} | `{c}` |" for a, c in missing)
    blocks.insert(0, ("md", summary))
    md, page = render(blocks, f"recnarr report: {run.name}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(md)
    (out / "index.html").write_text(page)
    print(f"report -> {out / 'index.html'} ({len(list(plots.glob('*.png')))} plots; "
          f"{len(missing)} artifact(s) missing{': ' + ', '.join(a for a, _ in missing) if missing else ''})")
    log_eval_run(cfg, "report", {"report.missing_artifacts": float(len(missing))}, [out / "index.html",
                 out / "report.md", plots], artifact_path="report")
    return out
