"""No module outside `recnarr/layout.py` spells a run's folder names: they ask `RunConfig.layout`, so the
layout of a run is written down once."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "recnarr"
FOLDERS = ("data", "corpus", "pretrain", "index", "narratives", "finetune", "serving", "merged", "export", "eval",
           "report", "batch", "imported", "compare", "compare-runs", "pipeline.json")
_names = "|".join(re.escape(f) for f in FOLDERS)
HARD_CODED = [
    re.compile(r"""stage_dir\(\s*["']"""),  # a folder by name: use the layout's property instead
    re.compile(rf"""/\s*["']({_names})["']"""),  # x / "pretrain"
    re.compile(rf"""["']({_names})["']\s*/"""),  # "finetune" / method
    re.compile(r"""run_dir\)?\s*/\s*["']"""),  # Path(cfg.run_dir) / "..."
    re.compile(rf"""\{{run(_dir)?\}}/({_names})\b"""),  # f"{run}/finetune/scratch"
]


def hard_coded_paths(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in HARD_CODED)]


def test_the_patterns_catch_what_they_are_for():
    for bad in ('cfg.stage_dir("index")', 'cfg.layout.root / "pretrain"', '"finetune" / method',
                'Path(cfg.run_dir) / "pipeline.json"', 'f"--out {run}/finetune/scratch"'):
        assert hard_coded_paths(bad), bad
    assert not hard_coded_paths('cfg.layout.finetune("scratch") / "last" / "meta.json"')


def test_no_run_folder_is_spelled_outside_the_layout():
    found = {str(f.relative_to(SRC)): hits for f in sorted(SRC.rglob("*.py")) if f.name != "layout.py"
             if (hits := hard_coded_paths(f.read_text()))}
    assert not found, f"run folders spelled outside layout.py (use cfg.layout): {found}"
