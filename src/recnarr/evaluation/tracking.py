"""One MLflow run per evaluation stage (narratives, fairness, report): its metrics and its files.

Apart from the report so the evaluations that log a run do not import the report that reads them.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from recnarr.config import RunConfig


def _metric_key(key: str) -> str:
    return re.sub(r"[^\w.\-/ ]", "_", key)  # MLflow keys: alphanumerics, _ - . / and spaces


def log_eval_run(cfg: RunConfig, run_name: str, metrics: dict[str, float], files: Sequence[Path],
                 artifact_path: str = "eval") -> str | None:
    """One MLflow run with the metrics and the files (when `eval.tracking`). A tracking failure is printed,
    not raised: the evaluation's own files are already written."""
    if not cfg.eval.tracking:
        return None
    try:
        from recnarr.training.tracking import MlflowTracker

        tracker = MlflowTracker(cfg.pretrain.tracking_uri, cfg.pretrain.experiment)
        tracker.start({"run_dir": cfg.run_dir, "stage": run_name}, run_name=run_name)
        tracker.log_metrics({_metric_key(k): v for k, v in metrics.items() if v is not None}, step=0)
        with tempfile.TemporaryDirectory() as tmp:
            for f in files:
                if Path(f).is_file():
                    shutil.copy2(f, Path(tmp) / Path(f).name)
                elif Path(f).is_dir():
                    shutil.copytree(f, Path(tmp) / Path(f).name)
            tracker.log_artifacts(tmp, artifact_path)
        tracker.finish()
        print(f"tracking: MLflow run {tracker.run_id} ({cfg.pretrain.tracking_uri}, experiment "
              f"{cfg.pretrain.experiment!r})")
        return tracker.run_id
    except Exception as e:  # noqa: BLE001 - tracking is optional; say why it failed and go on
        print(f"tracking: MLflow logging failed ({type(e).__name__}: {e}); the files under {cfg.run_dir} are complete")
        return None
