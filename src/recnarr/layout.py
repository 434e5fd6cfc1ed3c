"""Where a run keeps its artifacts, and how its checkpoints are found: the one place for run paths.

    <run>/data  corpus  pretrain/{best,last,imported}  index  narratives
          finetune/<method>/{best,last}  finetune/compare  finetune/compare-runs/<variant>
          serving/{merged,<mode>}  export/{hf,gguf}  eval/indexes/<dataset>  report  batch  pipeline.json

A training folder holds `best` (lowest validation loss) and `last` (the newest step); a reader wants the
best one and falls back to the last (`first_checkpoint`). Every other module asks `RunConfig.layout`
(this class) for a folder instead of spelling its name, so renaming a folder is one edit here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BEST, LAST = "best", "last"  # a training folder's lowest-validation-loss and newest-step checkpoints
CHECKPOINT_ORDER = (BEST, LAST)  # which of them a reader takes first; a resumed run continues LAST


REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout: configs/ and the shipped models/ live here


def portable(path: str | os.PathLike) -> str:
    """A path as an output file records it, never absolute (a record must not tell how the host is laid
    out, and stays true when the folders move): relative to the working directory when under it, else
    relative to the checkout (the shipped models), else its last part, as the API shows paths."""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    p = p.resolve()
    for base in (Path.cwd().resolve(), REPO_ROOT):
        if p.is_relative_to(base):
            return str(p.relative_to(base)) or "."
    return p.name


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

    # one folder per stage
    @property
    def data(self) -> Path:
        return self.stage("data")

    @property
    def corpus(self) -> Path:
        return self.stage("corpus")

    @property
    def pretrain(self) -> Path:
        return self.stage("pretrain")

    @property
    def index(self) -> Path:
        return self.stage("index")

    @property
    def narratives(self) -> Path:
        return self.stage("narratives")

    @property
    def eval(self) -> Path:
        return self.stage("eval")

    def eval_index(self, dataset: str) -> Path:
        """`recnarr evaluate retrieval`'s own index of another dataset than the run's."""
        return self.eval / "indexes" / dataset

    @property
    def report(self) -> Path:
        return self.stage("report")

    @property
    def batch(self) -> Path:
        return self.stage("batch")

    @property
    def pipeline_state(self) -> Path:
        """`recnarr pipeline`'s record of each stage's fingerprint."""
        return self.root / "pipeline.json"

    # training outputs
    @property
    def imported(self) -> Path:
        """Where `recnarr import` puts a foreign model by default."""
        return self.pretrain / "imported"

    @property
    def finetune_root(self) -> Path:
        return self.stage("finetune")

    def finetune(self, method: str) -> Path:
        return self.finetune_root / method

    @property
    def compare(self) -> Path:
        """`recnarr finetune --compare`: the results table."""
        return self.finetune_root / "compare"

    def compare_run(self, variant: str) -> Path:
        """One comparison variant's training folder."""
        return self.finetune_root / "compare-runs" / variant

    # what is served and exported
    @property
    def serving_root(self) -> Path:
        return self.stage("serving")

    @property
    def merged(self) -> Path:
        return self.serving_root / "merged"

    def serving(self, mode: str) -> Path:
        return self.serving_root / mode

    def export(self, fmt: str) -> Path:
        return self.stage("export") / fmt

    # checkpoint search
    def pretrained(self) -> Path | None:
        """The pretrained checkpoint a fine-tune starts from: best, else last."""
        return first_checkpoint(self.pretrain)

    def finetuned(self, method: str) -> Path | None:
        """A fine-tuned folder (an adapter has no config.json of its own): best, else last."""
        return first_checkpoint(self.finetune(method), marker=None)

    def exportable(self) -> list[Path]:
        """What `recnarr export` takes by default, in order: the merged fine-tune, then the pretrained."""
        return [self.merged, *(self.pretrain / n for n in CHECKPOINT_ORDER)]
