from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_tokens(path: Path, n: int, vocab: int, seed: int) -> Path:
    """A small uint16 token file like `recnarr data corpus` writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # a learnable pattern (a repeated random phrase) plus noise, so the loss actually goes down
    phrase = rng.integers(0, vocab, 17)
    data = np.tile(phrase, n // 17 + 1)[:n]
    noise = rng.random(n) < 0.2
    data[noise] = rng.integers(0, vocab, int(noise.sum()))
    data.astype(np.uint16).tofile(path)
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "run" / "corpus"
    write_tokens(folder / "train.bin", 20_000, 64, 0)
    write_tokens(folder / "val.bin", 2_000, 64, 1)
    (folder / "manifest.json").write_text('{"tokens": 22000}')
    return folder

