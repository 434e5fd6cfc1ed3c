"""`recnarr batch`: a row for every customer, resumable part by part, rows equal to the API's."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from recnarr.inference.batch import run_batch, select_users

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import tiny_generator  # noqa: E402


@pytest.fixture(scope="module")
def gen(shared_cache):
    return tiny_generator.build(engine="gpt", max_new_tokens=24)  # a real (random-weight) GPT, fp32


def table(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder).drop(columns=["timings"]).sort_values("user_id").reset_index(drop=True)


def test_every_customer_once_and_a_killed_part_is_rewritten_the_same(gen, tmp_path):
    out = tmp_path / "b"
    run_batch(gen, out, part_size=2)
    first = table(out)
    users = select_users(gen.dataset, "all")
    assert list(first["user_id"]) == users and first["user_id"].is_unique
    assert first["narrative"].notna().all() and (first["verified"] | first["fallback"]).all()
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == -(-len(users) // 2)
    # a kill mid-part: the part never appeared, only its hidden temporary file
    killed = parts[-1]
    killed.unlink()
    (out / f".{killed.name}.tmp").write_bytes(b"half a parquet file")
    kept = {p: p.stat().st_mtime_ns for p in parts[:-1]}
    run_batch(gen, out, part_size=2)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished parts were not redone
    pd.testing.assert_frame_equal(table(out), first)


def test_a_row_is_what_the_api_writes_for_its_seed(gen, tmp_path):
    run_batch(gen, tmp_path / "b", part_size=4, limit=3)
    for _, row in table(tmp_path / "b").iterrows():
        api = gen.recommend(row["user_id"], n=3, sampling={"seed": int(row["seed"])})
        assert api.narrative.text == row["narrative"]
        assert [p.id for p in api.products] == list(row["product_ids"])


def test_bad_settings_and_users_are_named(gen, tmp_path):
    run_batch(gen, tmp_path / "b", part_size=2, limit=2)
    with pytest.raises(ValueError, match="other settings \\(part_size\\)"):
        run_batch(gen, tmp_path / "b", part_size=3, limit=2)
    ids = tmp_path / "ids.txt"
    ids.write_text("nobody-1\nnobody-2\n")
    with pytest.raises(ValueError, match="2 customer ids have no interactions"):
        select_users(gen.dataset, str(ids))
    with pytest.raises(ValueError, match="no customer with interactions in segment 'Martians'"):
        select_users(gen.dataset, "segment=Martians")
    with pytest.raises(FileNotFoundError, match="no such file"):
        select_users(gen.dataset, str(tmp_path / "missing.txt"))
    from recnarr.config import RunConfig
    from recnarr.stages.batch import batch

    with pytest.raises(ValueError, match="--max-batch must be >= 1, got 0"):
        batch(RunConfig(), out=str(tmp_path / "c"), max_batch=0)
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_kill_9_halfway_and_a_rerun_give_the_same_table(gen, tmp_path):
    import os
    import signal
    import subprocess
    import time

    serving = str(Path(__file__).resolve().parents[1] / "serving")
    script = ("import sys, time; import tiny_generator; from pathlib import Path; "
              "import recnarr.inference.batch as b; part = b.narrate_part; "
              "b.narrate_part = lambda *a: (time.sleep(0.3), part(*a))[1]; "  # slow enough to die halfway
              "b.run_batch(tiny_generator.build(engine='gpt', max_new_tokens=24), Path(sys.argv[1]), part_size=1)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([serving, os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list(out.glob("part-*.parquet"))) < len(select_users(gen.dataset, "all"))  # it died halfway
    run_batch(gen, out, part_size=1)
    run_batch(gen, tmp_path / "whole", part_size=1)
    pd.testing.assert_frame_equal(table(out), table(tmp_path / "whole"))


@pytest.mark.slow
def test_ray_engine_writes_the_rows_of_the_local_engine(gen, tmp_path, monkeypatch):
    """On a local Ray (2 CPUs in CI): the same parts, the same rows, for the same seeds."""
    import os
    from functools import partial

    pytest.importorskip("ray")
    from recnarr.inference.batch import run_ray

    serving = str(Path(__file__).resolve().parents[1] / "serving")  # the workers import tiny_generator
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([serving, os.environ.get("PYTHONPATH", "")]))
    factory = partial(tiny_generator.build, engine="gpt", max_new_tokens=24)
    loads = []

    def plan():  # the driver reads the customer list and versions without loading a model
        loads.append(1)
        return gen.dataset, gen.versions

    run_ray(factory, tmp_path / "ray", part_size=3, workers=1, plan=plan)
    assert loads == [1] and not (tmp_path / "ray" / "_ray_staging").exists()
    run_batch(gen, tmp_path / "local", part_size=3)
    assert sorted(p.name for p in (tmp_path / "ray").glob("part-*")) == \
        sorted(p.name for p in (tmp_path / "local").glob("part-*"))
    pd.testing.assert_frame_equal(table(tmp_path / "ray"), table(tmp_path / "local"))


def test_the_generator_excludes_all_a_user_saw_not_only_positives(gen, monkeypatch):
    """The service path passes the user to the recommender: an item seen (a low rating, a view) never
    comes back, as the recommender's own `seen` says."""
    uid = select_users(gen.dataset, "all")[0]
    top = gen.retrieve(uid, None, None, None, 3)[1][0].product.id
    seen = gen.recommender.seen(uid) | {top}  # as if the user had rated it 2
    monkeypatch.setattr(gen.recommender, "seen", lambda user_id: seen)
    assert top not in [r.product.id for r in gen.retrieve(uid, None, None, None, 3)[1]]


def test_parts_staged_by_a_killed_ray_job_are_kept_when_whole_and_redone_when_cut(gen, tmp_path):
    from recnarr.inference.batch import STAGING, promote_staged

    run_batch(gen, tmp_path / "local", part_size=3)
    parts = [sorted(pd.read_parquet(f)["user_id"]) for f in sorted((tmp_path / "local").glob("part-*.parquet"))]
    out = tmp_path / "ray"
    for k in (0, 1):  # as Ray's writer leaves them: one folder per part, the part column dropped
        d = out / STAGING / f"part={k}"
        d.mkdir(parents=True)
        data = (tmp_path / "local" / f"part-{k:05d}.parquet").read_bytes()
        (d / "abc_000000.parquet").write_bytes(data if k == 0 else data[: len(data) // 2])  # part 1: cut
    assert promote_staged(out, parts) == 1
    assert (out / "part-00000.parquet").exists() and not (out / "part-00001.parquet").exists()
    assert (out / STAGING / "part=1").exists()  # left to be redone
    run_batch(gen, out, part_size=3)  # the local engine resumes it
    assert table(out).equals(table(tmp_path / "local"))
