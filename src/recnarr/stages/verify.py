"""`recnarr verify --preset P FILE.jsonl`: check any copy against the catalog and the customer's records
(the line format and the check are described in recnarr.inference.verify)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from recnarr.config import RunConfig
from recnarr.data.run_data import load_dataset
from recnarr.inference.records import RecordBuilder
from recnarr.inference.verify import verify_stream


def verify_command(cfg: RunConfig, file: str, **_: Any) -> int:
    """`recnarr verify FILE`: the run's dataset (`<run>/data`), the texts in FILE (`-`: standard input)."""
    if file != "-" and not Path(file).is_file():
        raise FileNotFoundError(f"{file}: no such file (one JSON object a line: user_id or history, product_id, "
                                "text)")
    builder = RecordBuilder(load_dataset(cfg), cfg.narratives.min_support)
    with (open(file) if file != "-" else sys.stdin) as f:
        passed, checked = verify_stream(builder, f, sys.stdout)
    print(f"verify: {passed} of {checked} texts pass", file=sys.stderr)
    return 0 if passed == checked else 1
