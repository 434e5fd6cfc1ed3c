"""Experiment tracking: MLflow to a local SQLite store, or nothing.

`sqlite:///mlruns.db` (the default) is a file in the working directory, and artifacts go to `mlruns/`
beside it; an absolute store (`sqlite:////abs/path/runs.db`) keeps its artifacts in `/abs/path/mlruns/`.
No server is involved. `Tracker` is the no-op used when tracking is off (and on every DDP rank but 0),
so the trainer never branches on it. MLflow is imported only when a tracker is actually made.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class Tracker:
    """The tracking interface; this base class does nothing."""

    run_id: str | None = None

    def start(self, params: Mapping[str, Any], run_name: str | None = None, run_id: str | None = None) -> None:
        """Begin a run (or continue `run_id`, on resume) and record its parameters."""

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        """Record scalar metrics at a step; None values are skipped."""

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy a folder (a checkpoint) into the run's artifacts."""

    def finish(self, status: str = "FINISHED") -> None:
        """End the run: FINISHED | FAILED | KILLED."""


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"pretrain.lr": "0.0006", ...} (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_params(v, f"{key}."))
        else:
            out[key] = str(v)[:6000]  # MLflow's limit on a param value
    return out


def artifact_root(tracking_uri: str) -> str | None:
    """Where a SQLite store's artifacts live: `mlruns/` beside the database file (as a file:// URI)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))  # relative to the working directory unless absolute
    return (db.resolve().parent / "mlruns").as_uri()


class MlflowTracker(Tracker):
    def __init__(self, tracking_uri: str = "sqlite:///mlruns.db", experiment: str = "recnarr"):
        from mlflow.tracking import MlflowClient

        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent.mkdir(parents=True, exist_ok=True)
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.client = MlflowClient(tracking_uri=tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_root(tracking_uri))
        else:
            self.experiment_id = exp.experiment_id

    def start(self, params: Mapping[str, Any], run_name: str | None = None, run_id: str | None = None) -> None:
        from mlflow.entities import Param

        if run_id is not None:
            try:
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                return  # params were logged when the run began; MLflow refuses to change them
            except Exception as e:  # noqa: BLE001 - an unknown/deleted run: start a new one, and say so
                print(f"tracking: cannot continue MLflow run {run_id} ({e}); starting a new run")
        self.run_id = self.client.create_run(self.experiment_id, run_name=run_name).info.run_id
        items = [Param(k, v) for k, v in flatten_params(params).items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.run_id is not None:
            self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)


def make_tracker(enabled: bool, tracking_uri: str = "sqlite:///mlruns.db", experiment: str = "recnarr") -> Tracker:
    """An MLflow tracker when `enabled`, otherwise the no-op `Tracker`."""
    return MlflowTracker(tracking_uri, experiment) if enabled else Tracker()
