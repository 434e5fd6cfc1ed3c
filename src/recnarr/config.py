"""Typed configuration: one dataclass per stage, YAML presets in configs/, `key=value` overrides.

The dataclass defaults are the reference run (`slm-60m` on a GPU). A preset is a YAML file that may
start with a hydra-style `defaults: [other_preset]` list; it is merged over the defaults it names,
then the command line's `key=value` pairs (dotted keys, e.g. `pretrain.max_steps=200`) on top.
Every stage writes the resolved config into its artifact folder (`save_config`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from recnarr.choices import Backend, FinetuneMethod, GgufQuant, IndexType, QuantMode, Style
from recnarr.model.gpt import GPTConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


class ConfigError(ValueError):
    """A preset or override that does not fit the typed config."""


@dataclass
class DataConfig:
    """`recnarr data load|split`: which catalog and histories, and how to split them."""

    dataset: str = "superstore"  # superstore | movielens | custom | amazon2023
    category: str | None = None  # amazon2023: the category as released, e.g. All_Beauty, Home_and_Kitchen
    catalog: str | None = None  # custom: CSV / JSONL / Parquet file of products (amazon2023: the meta file)
    interactions: str | None = None  # custom: file of interactions (amazon2023: the reviews file)
    users: str | None = None  # custom: optional file of users
    column_map: str | None = None  # YAML mapping the user's column names to ours
    skip_invalid: bool = False  # report and skip bad rows instead of failing on the first
    holdout_val: int = 1  # last N interactions (by time) per user held out for validation
    holdout_test: int = 1  # ... and the N after those for test
    min_history: int = 3  # users with fewer interactions stay entirely in train
    max_products: int | None = None  # keep only the N most-interacted products (smoke runs, notebooks in CI)


@dataclass
class CorpusConfig:
    """`recnarr data corpus`: the general-English pretraining corpus."""

    sources: list[str] = field(default_factory=lambda: ["brown", "sotu", "news", "parliament"])
    include_sentences: bool = False  # nlp-corpus sentences contain slurs; off unless asked
    text_dir: str | None = None  # any folder of .txt files, added to the sources
    hf_dataset: str | None = None  # a Hugging Face dataset name (needs a network)
    hf_text_field: str = "text"
    hf_split: str = "train"
    blocklist_file: str | None = None  # extra words (one a line) whose sentences are dropped from `sentences`
    val_fraction: float = 0.01  # share of documents held out for validation (per source, at least one)
    min_chars: int = 40  # documents shorter than this after cleaning are dropped
    max_docs: int | None = None  # cap per source (tests and tiny runs)
    workers: int = 2  # tokenizer processes
    progress: bool = True
    seed: int = 1337


@dataclass
class TrainConfig:
    """One training loop serves pretraining and fine-tuning (`recnarr pretrain|finetune`)."""

    max_steps: int = 6000
    batch_size: int = 32
    grad_accum: int = 4
    lr: float = 6e-4
    min_lr: float = 6e-5
    warmup_steps: int = 200
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dtype: str = "bf16"  # bf16 | fp32 (autocast; bf16 is ~1.5x faster on this CPU too)
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | mps
    seed: int = 1337
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    ckpt_interval: int = 250
    max_minutes: float | None = None  # stop (and checkpoint) after this wall time
    progress: bool = True
    tracking: bool = True
    tracking_uri: str = "sqlite:///mlruns.db"
    experiment: str = "recnarr"
    log_checkpoint: bool = True  # the final best (else last) checkpoint as an MLflow artifact


@dataclass
class FinetuneConfig:
    """`recnarr finetune`: LoRA / QLoRA / full fine-tuning on narrative examples."""

    method: FinetuneMethod = FinetuneMethod.lora
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["c_attn", "c_proj", "c_fc"])
    # train.lr is the adapters' rate (LoRA wants ~1e-3..3e-3); full fine-tuning of every weight uses this
    # lower one (min_lr scaled by the same ratio)
    full_lr: float = 5e-4
    # `recnarr finetune --compare`: the variants trained with the same step budget (method[-rN])
    compare: list[str] = field(default_factory=lambda: ["full", "lora-r16", "lora-r32", "qlora-r16"])
    eval_examples: int = 16  # validation prompts generated greedily for the grounding pass rate
    eval_max_new_tokens: int = 160
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(max_steps=1500, lr=2e-3, min_lr=2e-4, warmup_steps=50, weight_decay=0.0)
    )


@dataclass
class IndexConfig:
    """`recnarr index`: product embeddings and the FAISS index."""

    embed_model: str = "all-MiniLM-L6-v2"
    index_type: IndexType = IndexType.flat  # flat (exact inner product) | hnsw | ivfpq
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 64
    ivf_nlist: int = 1024
    ivf_nprobe: int = 32
    pq_m: int = 48  # sub-quantizers; must divide the embedding dimension (384)
    pq_nbits: int = 8
    ivf_refine: int = 4  # IVF-PQ: fetch k * this from the codes, re-score them exactly (stored vectors)
    batch_size: int = 128
    progress: bool = True
    incremental: bool = True  # reuse an existing index folder: embed only new/changed products
    search_threads: int = 1  # FAISS threads for requests of <= 16 queries (0: all cores); see index.py


@dataclass
class RetrievalConfig:
    """How a user's history and text become a query, and how candidates are re-ranked."""

    recency_half_life_days: float = 180.0
    text_weight: float = 0.5  # weight of the free-text vector against the history vector
    # re-ranking weights, chosen on the VALIDATION split only (400 users each of Superstore and MovieLens;
    # grid ease_l2 {50, 200, 500} x ease_weight {0.5, 1, 2, 4} x popularity {0, 0.2, 0.4} x co-purchase
    # {0, 0.4}; the best worst case of NDCG@10 / the dataset's best classic baseline (item-kNN on
    # MovieLens, most-popular on Superstore): 1.26x both). See recnarr.retrieval.recommender for the score.
    popularity_weight: float = 0.4
    copurchase_weight: float = 0.0  # EASE carries the co-occurrence signal better; reasons still cite co-purchases
    candidates: int = 200  # nearest neighbours fetched before filters and re-ranking
    copurchase_candidates: int = 50  # ... plus up to this many items most co-purchased with the history
    positive_min_rating: float = 4.0  # a `rating` event counts as a positive (history, popularity) from here
    max_reasons: int = 3  # past purchases cited per result
    # EASE (recnarr.retrieval.collaborative): item-item weights learned from the train positives, blended
    # in with this weight (0 = off); its top items join the candidate pool. Catalogs above ease_max_items
    # go without it (a dense items x items matrix).
    ease_weight: float = 4.0
    ease_l2: float = 500.0
    ease_candidates: int = 100
    ease_max_items: int = 20_000
    # sequential rules (recnarr.retrieval.collaborative): what follows the newest `sequence_last` history
    # items in other users' time-ordered interactions (any event, within `sequence_window` steps), blended
    # in with this weight (0 = off); its top items join the candidate pool
    sequence_weight: float = 0.0
    sequence_window: int = 10
    sequence_last: int = 3
    sequence_candidates: int = 100
    # per-dataset overrides of the fields above, by dataset name (chosen on that dataset's validation split):
    # {"movielens": {"sequence_weight": 2.0}}; a catalog without an entry uses the plain values
    per_dataset: dict[str, dict[str, float]] = field(default_factory=lambda: {
        # `recnarr evaluate retrieval --preset cpu-small --tune`: coordinate ascent over TUNE_GRID on six
        # rolling VALIDATION folds whose targets all precede the test folds' (recnarr.evaluation.retrieval;
        # MovieLens 169 cases, pooled NDCG@10 0.0654; Superstore 1,031 cases, pooled category hit@10 0.751,
        # the measure with power there). EASE carries most of the blend on both.
        "movielens": {"ease_l2": 250.0, "ease_weight": 64.0, "sequence_weight": 2.0, "popularity_weight": 0.0,
                      "copurchase_weight": 0.0, "recency_half_life_days": 7.0, "max_per_category": 3},
        "superstore": {"ease_l2": 100.0, "ease_weight": 64.0, "sequence_weight": 8.0, "popularity_weight": 0.0,
                       "copurchase_weight": 0.0, "recency_half_life_days": 30.0, "max_per_category": 2},
    })
    # diversity: at most this many results of one leaf category in a list (None = no cap)
    max_per_category: int | None = 3
    # repurchase sense (recnarr.retrieval.repurchase), learned per leaf category from the train purchases:
    # what was seen is never recommended again (a rating of any value, a view, a purchase), except an item
    # of a consumable leaf whose buyers buy the same item again (item repeat rate >= rebuy_item_rate); no
    # item of a durable leaf (repeat rate < durable_below, median price >= durable_price_ratio x the
    # catalog's) while a purchase of it is younger than its interval. Estimates shrink toward the
    # department and the catalog with `repurchase_prior` pseudo customers; without repeat data the price
    # rule decides and the intervals are the two defaults below.
    repurchase_prior: float = 5.0
    durable_below: float = 0.2
    durable_price_ratio: float = 2.0
    rebuy_item_rate: float = 0.05
    durable_interval_days: float = 365.0
    consumable_interval_days: float = 30.0
    # overrides of the learned sense, by leaf category (case-insensitive): consumables whose exact items
    # may come back (e.g. ["Paper", "Labels"]), and durables (no sibling within the interval)
    rebuy_categories: list[str] = field(default_factory=list)
    durable_categories: list[str] = field(default_factory=list)
    # small shops: below this many train positives the collaborative terms (EASE, sequence, co-purchase)
    # are scaled by positives / this, so an untrained model never dominates, and complements (another
    # leaf of a department in the history) get complement_weight x (1 - that scale); 0 turns it off
    small_shop_interactions: int = 1000
    complement_weight: float = 0.3


@dataclass
class NarrativeConfig:
    """`recnarr data narratives`: prompts + slotted targets from the data-to-text writer."""

    pairs_per_user: int = 4
    max_history: int = 4  # past purchases shown in the prompt
    tones: list[Style] = field(default_factory=lambda: list(Style))
    heldout_product_fraction: float = 0.1  # products never seen in fine-tuning (test)
    max_users: int | None = None
    seed: int = 1337
    min_support: int = 3  # distinct customers a "bought together" claim needs (else it is never made)


@dataclass
class QuantizeConfig:
    """`recnarr quantize`: the one quantization switch (recnarr.model.quantize)."""

    mode: QuantMode = QuantMode.int8  # what the generator serves
    group_size: int = 32  # int4: weights per (scale, zero) group along the input dimension
    # `recnarr quantize`: every mode written to <run>/serving/<mode>/ and measured in the table
    modes: list[QuantMode] = field(default_factory=lambda: list(QuantMode))
    bench_prompt_tokens: int = 200
    bench_new_tokens: int = 120
    bench_repeats: int = 3  # decode timing: best of this many runs
    bench_threads: int | None = None  # torch threads while timing (None: torch's default; 1 on a busy shared CPU)
    eval_batches: int = 20  # corpus val.bin windows (or narrative val batches) for the loss / perplexity
    eval_examples: int = 16  # narrative val prompts generated for the grounding pass rate (0: skip)
    # the pipeline's gguf stage: <run>/export/gguf/model-<gguf>.gguf of the merged model, for llama.cpp
    # (f32 | f16 | q8_0 need only the gguf package; q4_0 | q4_k_m need the llamacpp extra)
    gguf: GgufQuant = GgufQuant.q8_0


@dataclass
class GenerationConfig:
    """Default sampling controls for narratives."""

    max_new_tokens: int = 120
    min_new_tokens: int = 0
    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    seed: int | None = None
    max_retries: int = 2  # a sentence the verifier rejects is rolled back and sampled again this many times
    max_batch: int = 16  # narratives decoded together in one session (continuous batching)
    # torch: recnarr's GPT (any quantize.mode); llamacpp: a GGUF file run by llama.cpp (the llamacpp extra)
    backend: Backend = Backend.torch


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    ui_port: int = 8501
    max_queue: int = 16
    workers: int = 1


@dataclass
class EvalConfig:
    n_users: int = 100  # `evaluate fairness`: users whose recommendations are recomputed under each swap
    k: int = 10
    seed: int = 1337
    # `recnarr evaluate retrieval`: next-item prediction on the time split of each of these datasets
    retrieval_datasets: list[str] = field(default_factory=lambda: ["superstore", "movielens"])
    retrieval_max_users: int | None = None  # cap per dataset and fold (None: every user with a target)
    # rolling-origin folds (recnarr.evaluation.rolling): cutoffs at these quantiles of the interaction times
    # (ten folds: four gave Superstore 1,056 cases and MovieLens 282, too few to separate EASE from ours)
    rolling_quantiles: list[float] = field(default_factory=lambda: [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85,
                                                                    0.9, 0.95])
    # `recnarr evaluate narratives`: test examples narrated per system (fine-tuned, baselines, quant modes)
    narrative_examples: int = 100
    narrative_samples: int = 6  # example narratives kept per system for the report
    speed_probes: int = 3  # prompts timed for prefill / decode tokens per second
    # `recnarr evaluate fairness`
    fairness_datasets: list[str] = field(default_factory=lambda: ["superstore", "movielens"])
    fairness_max_users: int | None = None  # group metrics and exposure: cap per dataset (None: all)
    counterfactual_narratives: int = 20  # of the n_users, how many also get a narrative under every swap
    tail_ratio: float = 0.1  # RecBole TailPercentage: the share of least popular items that is the long tail
    permutations: int = 500  # permutation test of group gaps (a gap "fails" only if also significant)
    tracking: bool = True  # log evaluation and report runs to MLflow (pretrain.tracking_uri / experiment)


@dataclass
class RunConfig:
    """Everything a run needs. Stages read their own section; artifact folders live under `run_dir`."""

    run_dir: str = "runs/slm-60m"
    cache_dir: str | None = None  # registry downloads; default: $RECNARR_CACHE or ~/.cache/recnarr
    data: DataConfig = field(default_factory=DataConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: GPTConfig = field(default_factory=GPTConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    narratives: NarrativeConfig = field(default_factory=NarrativeConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def layout(self):  # -> recnarr.layout.RunLayout (imported here: layout is a leaf module)
        from recnarr.layout import RunLayout

        return RunLayout(Path(self.run_dir))


def preset_path(preset: str) -> Path:
    """A preset name (`base`, `cpu-small`) or a path to a YAML file."""
    p = Path(preset)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    p = CONFIG_DIR / f"{preset}.yaml"
    if not p.exists():
        names = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {preset!r}: expected one of {names} or a path to a .yaml file")
    return p


def _preset_chain(preset: str, seen: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The preset and the ones its `defaults:` list names, base first."""
    path = preset_path(preset)
    if str(path) in seen:
        raise ConfigError(f"preset {path} includes itself through its defaults list")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    chain: list[dict[str, Any]] = []
    for parent in raw.pop("defaults", []) or []:
        if parent == "_self_":
            continue
        chain += _preset_chain(str(parent), (*seen, str(path)))
    chain.append(raw)
    return chain


def load_config(preset: str = "base", overrides: list[str] | None = None) -> RunConfig:
    """Resolve a preset plus `key=value` overrides into a typed `RunConfig`."""
    cfg = OmegaConf.structured(RunConfig)
    try:
        for layer in _preset_chain(preset):
            cfg = OmegaConf.merge(cfg, layer)
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value (e.g. pretrain.max_steps=100)")
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    except (ConfigKeyError, ValidationError) as e:
        raise ConfigError(f"config error ({preset}): {e.msg if hasattr(e, 'msg') else e}") from e
    return OmegaConf.to_object(cfg)


def to_dict(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def save_config(cfg: Any, folder: str | os.PathLike, name: str = "config.yaml") -> Path:
    """Record the resolved config that made an artifact folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(_portable_paths(to_dict(cfg)), sort_keys=False))
    return path


def _portable_paths(value: Any) -> Any:
    """A record's absolute paths made portable (`layout.portable`): a run given as /srv/x/run records
    `run`, a catalog under the working directory its relative path."""
    from recnarr.layout import portable

    if isinstance(value, dict):
        return {k: _portable_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable_paths(v) for v in value]
    return portable(value) if isinstance(value, str) and os.path.isabs(value) else value


def cache_dir(cfg: RunConfig | None = None) -> Path:
    """Where registry downloads and extracted sources live (configurable, default the user's cache)."""
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    if os.environ.get("RECNARR_CACHE"):
        return Path(os.environ["RECNARR_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recnarr"
