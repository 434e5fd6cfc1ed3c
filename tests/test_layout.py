"""The run layout: where each artifact lives, and best-then-last checkpoint search."""

from __future__ import annotations

from recnarr.config import load_config
from recnarr.layout import RunLayout, first_checkpoint


def test_best_then_last_and_the_marker(tmp_path):
    assert first_checkpoint(tmp_path) is None
    (tmp_path / "last").mkdir()
    assert first_checkpoint(tmp_path) is None  # a folder without config.json is not a checkpoint
    assert first_checkpoint(tmp_path, marker=None) == tmp_path / "last"  # an adapter folder is enough here
    (tmp_path / "last" / "config.json").write_text("{}")
    assert first_checkpoint(tmp_path) == tmp_path / "last"
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "config.json").write_text("{}")
    assert first_checkpoint(tmp_path) == tmp_path / "best"


def test_the_config_and_the_stages_use_one_layout(tmp_path):
    cfg = load_config("tiny", [f"run_dir={tmp_path}"])
    lay = cfg.layout
    assert lay == RunLayout(tmp_path) and lay.index == lay.stage("index") == tmp_path / "index"
    assert lay.finetune("lora") == tmp_path / "finetune" / "lora" and lay.serving("int8") == tmp_path / "serving" / "int8"
    assert lay.exportable() == [tmp_path / "serving" / "merged", tmp_path / "pretrain" / "best",
                                tmp_path / "pretrain" / "last"]
    assert lay.pretrained() is None
    (tmp_path / "pretrain" / "last").mkdir(parents=True)
    (tmp_path / "pretrain" / "last" / "config.json").write_text("{}")
    assert lay.pretrained() == tmp_path / "pretrain" / "last"


def test_every_artifact_folder_has_a_name_in_the_layout(tmp_path):
    lay = RunLayout(tmp_path)
    assert [lay.data, lay.corpus, lay.pretrain, lay.index, lay.narratives, lay.eval, lay.report, lay.batch] == [
        tmp_path / n for n in ("data", "corpus", "pretrain", "index", "narratives", "eval", "report", "batch")]
    assert lay.pipeline_state == tmp_path / "pipeline.json" and lay.imported == tmp_path / "pretrain" / "imported"
    assert lay.compare == tmp_path / "finetune" / "compare"
    assert lay.compare_run("full") == tmp_path / "finetune" / "compare-runs" / "full"
    assert lay.merged == lay.serving("merged") and lay.export("gguf") == tmp_path / "export" / "gguf"
    assert lay.eval_index("movielens") == tmp_path / "eval" / "indexes" / "movielens"
