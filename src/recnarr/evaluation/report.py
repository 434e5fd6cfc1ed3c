"""The report people read, rebuilt from the run's artifacts, nothing retrained or rerun (`recnarr report`).

Reads, where present:
- loss curves: every checkpoint folder's `meta.json` under `<run>/pretrain/` and `<run>/finetune/*/`; the
  full curve comes from the MLflow run it names (`mlflow_run_id`), else only the checkpoints' own points;
- `<run>/eval/narratives.json` (`recnarr evaluate narratives`): quality, grounding, latency, examples;
- `<run>/eval/fairness.json` (`recnarr evaluate fairness`): checks, group metrics, exposure, swaps;
- `<run>/eval/retrieval.json` (`recnarr evaluate retrieval`) and `<run>/serving/quantization.md`
  (`recnarr quantize`): their tables as they are.
Every missing artifact is listed as missing, with the command that makes it.

Writes `<run>/report/index.html`, `<run>/report/report.md` and `<run>/report/plots/*.png` (matplotlib),
and logs them to MLflow when `eval.tracking`.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from recnarr.config import RunConfig
from recnarr.layout import CHECKPOINT_ORDER, first_checkpoint

Block = tuple  # ("md", text) | ("img", file name, caption) | ("examples", [sample, ...])


# ------------------------------------------------------------------------------------------ inputs


def read_json(path: Path) -> Any | None:
    return json.loads(path.read_text()) if path.is_file() else None


def checkpoint_folders(cfg: RunConfig) -> dict[str, Path]:
    """{label: training folder} for pretraining and every fine-tuning output that has a checkpoint."""
    out: dict[str, Path] = {}
    pre = cfg.layout.pretrain
    if first_checkpoint(pre, "meta.json"):
        out["pretrain"] = pre
    ft = cfg.layout.finetune_root
    for folder in sorted(p for p in ft.glob("*") if p.is_dir()) if ft.is_dir() else []:
        if first_checkpoint(folder, "meta.json"):
            out[f"finetune/{folder.name}"] = folder
    return out


def _tracking_uri(meta: dict[str, Any]) -> str | None:
    rc = meta.get("run_config")
    if isinstance(rc, str):
        return None
    rc = rc or {}
    section = rc.get("pretrain", {}) if meta.get("stage") == "pretrain" else rc.get("finetune", {}).get("train", {})
    return section.get("tracking_uri")


def loss_curve(folder: Path) -> dict[str, Any]:
    """{"source", "train": [[step, loss]], "val": [[step, loss]], "note"} for one training folder."""
    metas = [m for m in (read_json(folder / n / "meta.json") for n in reversed(CHECKPOINT_ORDER)) if m]  # last first
    run_id = next((m.get("mlflow_run_id") for m in metas if m.get("mlflow_run_id")), None)
    uri = next((_tracking_uri(m) for m in metas if _tracking_uri(m)), None)
    note = ""
    if run_id and uri:
        db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        if db is not None and not db.is_file():
            note = f"MLflow store {db} not found"
        else:
            try:
                from mlflow.tracking import MlflowClient

                client = MlflowClient(tracking_uri=uri)
                train = [[m.step, m.value] for m in client.get_metric_history(run_id, "loss")]
                val = [[m.step, m.value] for m in client.get_metric_history(run_id, "val_loss")]
                if train or val:
                    return {"source": f"MLflow run {run_id}", "train": sorted(train), "val": sorted(val), "note": ""}
                note = f"MLflow run {run_id} has no loss history"
            except Exception as e:  # noqa: BLE001 - fall back to the checkpoints' points, and say so
                note = f"MLflow run {run_id} unreadable ({type(e).__name__})"
    else:
        note = "trained without tracking"
    train, val = set(), set()
    for m in metas:
        step = int(m.get("step", 0) or 0)
        if m.get("train_loss") is not None:
            train.add((step, float(m["train_loss"])))
        if m.get("val_loss") is not None:
            val.add((step, float(m["val_loss"])))
    return {"source": "checkpoint meta.json", "train": sorted(map(list, train)), "val": sorted(map(list, val)),
            "note": note + "; only the checkpoints' own points"}


# ------------------------------------------------------------------------------------------ plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_losses(curves: dict[str, dict], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (label, c) in zip(axes[0], curves.items(), strict=True):
        for key, style in (("train", "-"), ("val", "o-")):
            if c[key]:
                xs, ys = zip(*c[key], strict=True)
                ax.plot(xs, ys, style, label=key, markersize=3)
        ax.set_title(f"{label}\n({c['source']})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bars(ax: Any, labels: list[str], series: dict[str, list[float | None]], title: str, pct: bool = False) -> None:
    import numpy as np

    x = np.arange(len(labels))
    w = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        ys = [np.nan if v is None else (100 * v if pct else v) for v in vals]
        ax.bar(x + i * w - 0.4 + w / 2, ys, w, label=name)
    ax.set_xticks(x, labels, rotation=25, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    if pct:
        ax.set_ylabel("%")
    ax.legend(fontsize=7)


def plot_narratives(res: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    """Grounding, quality and latency plots; returns (file name, caption) pairs."""
    plt = _plt()
    rows = {k: e for k, e in res["systems"].items() if e["status"] == "ok"}
    if not rows:
        return []
    labels = [e["name"] for e in rows.values()]
    m = [e["metrics"] for e in rows.values()]
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    _bars(axes[0], labels, {"hallucination raw": [x["hallucination_rate_raw"] for x in m],
                            "hallucination final": [x["hallucination_rate"] for x in m],
                            "fallback": [x["fallback_rate"] for x in m]}, "grounding (share of narratives)", pct=True)
    _bars(axes[1], labels, {"fact precision raw": [x["fact_precision_raw"] for x in m],
                            "fact precision final": [x["fact_precision"] for x in m],
                            "personal": [x["personal_rate"] for x in m],
                            "swap (other user)": [x["swap_rate"] for x in m]}, "facts and personalization")
    fig.tight_layout()
    fig.savefig(folder / "grounding.png", dpi=100)
    plt.close(fig)
    out.append(("grounding.png", "Grounding before (raw first attempt) and after the verifier; fact precision; "
                "personalization and the swap test"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    _bars(axes[0], labels, {"BLEU/100": [x["bleu"] / 100 for x in m], "ROUGE-L": [x["rougeL"] for x in m],
                            "distinct-2": [x["distinct_2"] for x in m], "FMR": [x["fmr"] for x in m]},
          "quality vs the writer's references")
    ppl = [(e["name"], e["metrics"].get("perplexity")) for e in rows.values() if e["metrics"].get("perplexity")]
    if ppl:
        axes[1].bar([p[0] for p in ppl], [p[1] for p in ppl])
        axes[1].set_yscale("log")
        axes[1].set_title("perplexity on held-out narratives (log)", fontsize=10)
        axes[1].tick_params(axis="x", rotation=25, labelsize=8)
    else:
        axes[1].set_axis_off()
    fig.tight_layout()
    fig.savefig(folder / "quality.png", dpi=100)
    plt.close(fig)
    out.append(("quality.png", "BLEU, ROUGE-L, distinct-2 and FMR by system; perplexity of the models"))
    lat = [(e["name"], e.get("latencies") or []) for k, e in rows.items() if k != "writer" and e.get("latencies")]
    if lat:
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(lat)), 4))
        ax.boxplot([v for _, v in lat], showfliers=True)
        ax.set_xticks(range(1, len(lat) + 1), [n for n, _ in lat], rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("seconds per narrative (all attempts)")
        ax.set_title("end-to-end latency", fontsize=10)
        fig.tight_layout()
        fig.savefig(folder / "latency.png", dpi=100)
        plt.close(fig)
        out.append(("latency.png", "Latency per narrative: generation (every attempt), slot filling and verification"))
    return out


def plot_fairness(res: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    plt = _plt()
    out = []
    k = res["k"]
    for d in res["datasets"]:
        name = d["dataset"]
        attrs = list(d["groups"].get("ours", {}))
        if attrs:
            fig, axes = plt.subplots(1, len(attrs), figsize=(5 * len(attrs), 3.8), squeeze=False)
            for ax, attr in zip(axes[0], attrs, strict=True):
                groups = list(d["groups"]["ours"][attr]["by_group"])
                series = {m: [d["groups"][m][attr]["by_group"].get(g, {}).get(f"recall@{k}") for g in groups]
                          for m in d["groups"]}
                _bars(ax, groups, series, f"{name}: Recall@{k} by {attr}")
            fig.tight_layout()
            fig.savefig(folder / f"groups_{name}.png", dpi=100)
            plt.close(fig)
            out.append((f"groups_{name}.png", f"{name}: Recall@{k} by user group, ours vs most-popular"))
        e = d["exposure"]
        fig, ax = plt.subplots(figsize=(6, 3.8))
        keys = ["coverage", "gini_products", "gini_brands", "tail_share"]
        _bars(ax, keys, {m: [e[m].get(x) for x in keys] for m in e}, f"{name}: item exposure")
        fig.tight_layout()
        fig.savefig(folder / f"exposure_{name}.png", dpi=100)
        plt.close(fig)
        out.append((f"exposure_{name}.png", f"{name}: catalog coverage, Gini of exposure, long-tail share, "
                    "ours vs most-popular"))
        swaps = d.get("swap_summary", {})
        if swaps:
            fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(swaps)), 4.2))
            _bars(ax, [k.removeprefix("name: ") for k in swaps],
                  {"Jaccard": [s["jaccard"] for s in swaps.values()],
                   "sentiment change": [s["sentiment"] for s in swaps.values()],
                   "formality change": [s["formality"] for s in swaps.values()]}, f"{name}: counterfactual swaps")
            ax.tick_params(axis="x", rotation=60)
            ax.axhline(0, color="#888", linewidth=0.6)
            fig.tight_layout()
            fig.savefig(folder / f"swaps_{name}.png", dpi=100)
            plt.close(fig)
            out.append((f"swaps_{name}.png", f"{name}: Jaccard@k of recommendations and mean tone change per swap "
                        "(names: to that display name; others: that attribute changed)"))
    return out


# ------------------------------------------------------------------------------------------ rendering


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def md_to_html(md: str) -> str:
    """The small Markdown the tables use: headings, pipe tables, ``` fences, paragraphs, inline code, bold."""
    out, table, pre = [], [], None

    def flush() -> None:
        if not table:
            return
        rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table if not re.fullmatch(r"\|[-:| ]+\|", r.strip())]
        out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr></thead><tbody>")
        for r in rows[1:]:
            cls = ' class="fail"' if any("FAIL" in c for c in r) else ""
            out.append(f"<tr{cls}>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>")
        out.append("</tbody></table>")
        table.clear()

    for line in md.splitlines():
        if line.strip().startswith("```"):
            flush()
            if pre is None:
                pre = []
            else:
                out.append("<pre>" + html.escape("\n".join(pre)) + "</pre>")
                pre = None
            continue
        if pre is not None:
            pre.append(line)
            continue
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        if m := re.match(r"(#{1,4})\s+(.*)", line):
            level = min(len(m.group(1)) + 1, 5)
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def _examples_md(samples: list[dict]) -> str:
    lines = []
    for s in samples:
        lines.append(f"**{s.get('customer') or 'anonymous'}** (user {s.get('user_id')}) bought "
                     + "; ".join(f"{h['title']} ({h['date']})" for h in s["history"])
                     + f" -> recommended **{s['product']}**"
                     + (f" (fallback after {s['attempts']} attempts)" if s.get("fallback") else ""))
        lines.append("")
        lines.append(f"> {s['text']}")
        lines.append("")
        if s.get("fallback") or s.get("attempts", 1) > 1:
            lines.append(f"First attempt (rejected by the verifier): {s.get('raw') or '(empty)'}")
            lines.append("")
        if s.get("citations"):
            lines.append("Cited facts: " + "; ".join(f"`{c['fact']}` = {c['value']} ({c['source']})"
                                                    for c in s["citations"]))
        if s.get("errors"):
            lines.append("Verifier errors of the first attempt: " + "; ".join(s["errors"][:4]))
        lines.append("")
    return "\n".join(lines)


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f3f3f3}tr.fail td{background:#fde2e2}code{background:#f3f3f3;padding:0 3px}
img{max-width:100%;border:1px solid #eee}.missing{color:#a00}blockquote{border-left:4px solid #8ab;margin:0.5em 0;
padding:0.2em 1em;background:#f6fafb}"""


def render(blocks: list[Block], title: str) -> tuple[str, str]:
    md, body = [f"# {title}", ""], []
    for b in blocks:
        if b[0] == "md":
            md += [b[1], ""]
            body.append(md_to_html(b[1]))
        elif b[0] == "img":
            md += [f"![{b[2]}](plots/{b[1]})", "", f"*{b[2]}*", ""]
            body.append(f'<figure><img src="plots/{html.escape(b[1])}" alt="{html.escape(b[2])}">'
                        f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
        elif b[0] == "examples":
            text = _examples_md(b[1])
            md += [text, ""]
            for s in b[1]:
                body.append(f"<p><b>{html.escape(s.get('customer') or 'anonymous')}</b> (user {html.escape(str(s.get('user_id')))})"
                            " bought " + html.escape("; ".join(f"{h['title']} ({h['date']})" for h in s["history"]))
                            + f" &rarr; <b>{html.escape(s['product'])}</b>"
                            + (f" <i>(fallback after {s['attempts']} attempts)</i>" if s.get("fallback") else "") + "</p>")
                body.append(f"<blockquote>{html.escape(s['text'])}</blockquote>")
                if s.get("fallback") or s.get("attempts", 1) > 1:
                    body.append("<p><small>first attempt (rejected by the verifier): "
                                f"{html.escape(s.get('raw') or '(empty)')}</small></p>")
                if s.get("citations"):
                    body.append("<ul>" + "".join(f"<li><code>{html.escape(c['fact'])}</code> = {html.escape(c['value'])} "
                                                 f"<small>({html.escape(c['source'])})</small></li>" for c in s["citations"])
                                + "</ul>")
                if s.get("errors"):
                    body.append("<p><small>verifier errors of the first attempt: "
                                + html.escape("; ".join(s["errors"][:4])) + "</small></p>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")
    return "\n".join(md) + "\n", page
