"""Every preset in configs/ resolves into the typed config; overrides are checked against it."""

from __future__ import annotations

import sys
import types

import pytest

from recnarr.config import CONFIG_DIR, ConfigError, RunConfig, load_config, save_config

PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_presets_exist():
    assert {"base", "inference", "tiny"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads(preset, tmp_path):
    cfg = load_config(preset)
    assert isinstance(cfg, RunConfig)
    assert cfg.run_dir
    # the resolved config is what an artifact folder records, and it loads back as the same config
    path = save_config(cfg, tmp_path)
    assert load_config(str(path)) == cfg


def test_overrides_and_errors():
    cfg = load_config("tiny", ["corpus.max_docs=3", "data.dataset=movielens", "corpus.sources=[brown]"])
    assert cfg.corpus.max_docs == 3 and cfg.data.dataset == "movielens" and cfg.corpus.sources == ["brown"]
    with pytest.raises(ConfigError, match="not_a_field"):
        load_config("tiny", ["data.not_a_field=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config("tiny", ["data.dataset"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("no-such-preset")


def test_cli_takes_overrides_before_and_after_flags(tmp_path, monkeypatch):
    import recnarr.cli as cli

    seen = {}

    def fake_stage(cfg, **flags):
        seen.update(cfg=cfg, flags=flags)
        return 0

    monkeypatch.setitem(sys.modules, "fake_stage_mod", types.SimpleNamespace(run=fake_stage))
    monkeypatch.setattr(cli, "COMMANDS", [cli.Command("x", "a test stage", "fake_stage_mod:run",
                                                      [cli.opt("--flag", action="store_true")])])
    argv = ["x", "--preset", "tiny", f"run_dir={tmp_path}", "--flag", "corpus.max_docs=3"]
    assert cli.main(argv) == 0
    assert seen["cfg"].run_dir == str(tmp_path) and seen["cfg"].corpus.max_docs == 3 and seen["flags"] == {"flag": True}
    assert cli.main(["x", "--preset", "tiny", "--flag", "not-an-override"]) == 2  # "not of the form key=value"
    with pytest.raises(SystemExit):
        cli.main(["x", "--preset", "tiny", f"run_dir={tmp_path}", "--nope", "a=1"])


def test_a_list_flag_does_not_swallow_the_overrides_after_it(tmp_path, monkeypatch):
    """`evaluate narratives --only int8 eval.narrative_examples=150`: the override is an override."""
    import recnarr.cli as cli

    seen = {}
    monkeypatch.setitem(sys.modules, "fake_stage_mod", types.SimpleNamespace(run=lambda cfg, **f: seen.update(
        cfg=cfg, flags=f) or 0))
    monkeypatch.setattr(cli, "COMMANDS", [cli.Command("x", "a test stage", "fake_stage_mod:run",
                                                      [cli.opt("--only", nargs="*", default=None)])])
    assert cli.main(["x", "--preset", "tiny", "--only", "int8", "gguf", f"run_dir={tmp_path}", "corpus.max_docs=3"]) == 0
    assert seen["flags"] == {"only": ["int8", "gguf"]} and seen["cfg"].corpus.max_docs == 3
    assert seen["cfg"].run_dir == str(tmp_path)


@pytest.mark.parametrize("key,bad", [("quantize.mode", "int3"), ("finetune.method", "adapter"),
                                     ("quantize.gguf", "q2"), ("generation.backend", "onnx"),
                                     ("index.index_type", "lsh"), ("quantize.modes", "[int8,int3]")])
def test_a_closed_choice_refuses_other_values(key, bad):
    # the message names the value, the allowed ones and the field
    with pytest.raises(ConfigError, match=r"Invalid value '\w+', expected one of \[") as e:
        load_config("tiny", [f"{key}={bad}"])
    assert f"full_key: {key}" in str(e.value)


def test_a_choice_is_its_string():
    from recnarr.choices import QUANT_MODES, QuantMode, check

    cfg = load_config("tiny", ["quantize.mode=int4"])
    # StrEnum: comparisons, f-strings, paths and the recorded YAML see the plain value
    assert cfg.quantize.mode == "int4" and f"{cfg.quantize.mode}" == "int4" and QUANT_MODES[3] == "int4"
    assert "mode: int4" in save_config_text(cfg)
    assert check(QuantMode, "nf4", "mode") == "nf4"
    with pytest.raises(ValueError, match=r"unknown mode 'fp8': expected one of none, bf16, int8, int4, nf4"):
        check(QuantMode, "fp8", "mode")


def save_config_text(cfg) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return save_config(cfg, d).read_text()
