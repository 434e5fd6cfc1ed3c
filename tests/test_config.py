"""Every preset in configs/ resolves into the typed config; overrides are checked against it."""

from __future__ import annotations

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
