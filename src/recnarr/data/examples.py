"""The fine-tuning examples' file format: `<run>/narratives/{train,val,test}.jsonl`, one example a line
(record, prompt, slotted target). `recnarr.inference.examples` writes them (it needs the retriever and
the verifier, two floors up); training, quantization and evaluation read them here.
"""

from __future__ import annotations

import json
from pathlib import Path


def load_examples(folder: str | Path, split: str) -> list[dict]:
    path = Path(folder) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `recnarr data narratives` first")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
