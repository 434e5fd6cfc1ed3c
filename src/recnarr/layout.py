"""Where a run keeps its artifacts, and how its checkpoints are found: the one place for run paths.

    <run>/data  corpus  pretrain/{best,last}  index  narratives  finetune/<method>/{best,last}
          serving/{merged,<mode>}  export/{hf,gguf}  eval  report  batch

A training folder holds `best` (lowest validation loss) and `last` (the newest step); a reader wants the
best one and falls back to the last (`first_checkpoint`). `RunConfig.stage_dir` is this layout's `stage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_ORDER = ("best", "last")  # which of a training folder's checkpoints a reader takes first


def first_checkpoint(folder: Path, marker: str | None = "config.json") -> Path | None:
    """`folder/best`, else `folder/last`, that holds `marker` (None: any folder); None if neither does."""
    for name in CHECKPOINT_ORDER:
        path = folder / name
        if (path / marker).is_file() if marker else path.is_dir():
            return path
    return None


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def stage(self, name: str) -> Path:
        return self.root / name

    @property
    def pretrain(self) -> Path:
        return self.stage("pretrain")

    def finetune(self, method: str) -> Path:
        return self.stage("finetune") / method

    @property
    def merged(self) -> Path:
        return self.stage("serving") / "merged"

    def serving(self, mode: str) -> Path:
        return self.stage("serving") / mode

    def pretrained(self) -> Path | None:
        """The pretrained checkpoint a fine-tune starts from: best, else last."""
        return first_checkpoint(self.pretrain)

    def finetuned(self, method: str) -> Path | None:
        """A fine-tuned folder (an adapter has no config.json of its own): best, else last."""
        return first_checkpoint(self.finetune(method), marker=None)

    def exportable(self) -> list[Path]:
        """What `recnarr export` takes by default, in order: the merged fine-tune, then the pretrained."""
        return [self.merged, *(self.pretrain / n for n in CHECKPOINT_ORDER)]
