"""MLflow tracking into a temporary SQLite store (real MLflow, no server), and the no-op tracker."""

from __future__ import annotations

import pytest

from recnarr.training.tracking import Tracker, artifact_root, flatten_params, make_tracker

from .test_trainer import TRAIN, make_trainer


def test_flatten_and_artifact_root(tmp_path, monkeypatch):
    assert flatten_params({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}
    monkeypatch.chdir(tmp_path)
    assert artifact_root("sqlite:///mlruns.db") == (tmp_path / "mlruns").as_uri()  # relative to the cwd
    assert artifact_root(f"sqlite:///{tmp_path}/x/runs.db") == (tmp_path / "x" / "mlruns").as_uri()
    assert artifact_root("http://localhost:5000") is None


def test_noop_tracker():
    t = make_tracker(False)
    assert type(t) is Tracker and t.run_id is None
    t.start({"a": 1})
    t.log_metrics({"loss": 1.0}, 1)
    t.finish()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside MLflow's SQLAlchemy store
def test_mlflow_metrics_params_and_checkpoint_artifact(corpus, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    tracker = make_tracker(True, uri, "test-exp")
    res = make_trainer(corpus, tmp_path / "out", tracker=tracker).fit()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == str(TRAIN.lr)
    loss = client.get_metric_history(tracker.run_id, "loss")
    assert [m.step for m in loss] == [2, 4, 6, 8]
    assert [m.value for m in loss] == pytest.approx([res.losses[i] for i in (1, 3, 5, 7)])
    assert [m.step for m in client.get_metric_history(tracker.run_id, "val_loss")] == [4, 8]
    assert client.get_metric_history(tracker.run_id, "tok_s")[0].value > 0
    assert client.get_metric_history(tracker.run_id, "lr")
    files = {f.path for f in client.list_artifacts(tracker.run_id, "checkpoint")}
    assert "checkpoint/model.safetensors" in files and "checkpoint/meta.json" in files
    assert (tmp_path / "mlruns").is_dir()  # artifacts beside the database
