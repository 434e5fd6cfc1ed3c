"""DistributedDataParallel on CPU (gloo): two processes launched like `torchrun --nproc_per_node 2`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recnarr.model.checkpoint import load_checkpoint, load_trainer_state


@pytest.mark.slow
def test_two_ranks_hold_identical_weights(corpus, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(corpus), str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # its own process group: a hang is killed with the workers
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun timed out:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert not torch.equal(r0.pop("first"), r1.pop("first"))  # per-rank data seeds: different batches
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    model, meta = load_checkpoint(tmp_path / "ckpt" / "last")  # written by rank 0 only
    assert meta["world_size"] == 2 and meta["step"] == 3 and meta["tokens_seen"] == 3 * 2 * 2 * 4 * 16
    assert torch.equal(model.state_dict()["transformer.wte.weight"], r0["transformer.wte.weight"])
    assert len(load_trainer_state(tmp_path / "ckpt" / "last")["ranks"]) == 2  # each rank's data position
