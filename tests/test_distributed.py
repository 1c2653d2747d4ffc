"""Data-parallel training: the train stage relaunches itself under torchrun when params ask for more
than one process; 2 processes on CPU with the gloo backend, as CI runs it."""

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import checkpoint, distributed
from pipeline.config import parse_params
from pipeline.stages import download, prepare, train
from tests.helpers import REPO, env, train_on_two_gloo_processes, weights


def test_shards_are_disjoint_equal_and_cover_what_can_be_shared():
    batches = [[i] for i in range(7)]
    shards = [distributed.shard(batches, distributed.Dist(rank=r, world=2)) for r in range(2)]
    assert shards == [[[0], [2], [4]], [[1], [3], [5]]]  # the odd one out is dropped on every rank
    assert distributed.shard(batches, distributed.Dist()) == batches


def test_torchrun_command_for_one_and_many_nodes():
    one = distributed.torchrun_command(2, 1, None, ["--params", "p.yaml"])
    assert one[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1", "--standalone",
                       "-m", "pipeline.stages.train", "--params", "p.yaml"]
    many = distributed.torchrun_command(8, 4, "head:29400", [])
    assert "--rdzv-endpoint=head:29400" in many and "--standalone" not in many


@pytest.mark.long
def test_two_gloo_processes_stay_in_sync_and_equal_one_process_with_twice_the_batch(params_dict, tmp_path):
    d = copy.deepcopy(params_dict)
    d["pool_size"] = 0  # an image pool is per process: without it the two runs must agree
    d["train"]["nproc_per_node"] = 2
    download.run(parse_params(d).data, Path(d["paths"]["raw"]), progress=False)
    prepare.run(parse_params(d), progress=False)
    for k in ("checkpoints", "model", "train_reports"):
        d["paths"][k] = str(tmp_path / "ddp" / k)
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(d))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.train", "--params", str(tmp_path / "ddp.yaml")],
                       cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "torch.distributed.run --nproc-per-node=2" in r.stderr
    ddp = checkpoint.load(d["paths"]["model"])
    sync = ddp["distributed"]
    assert sync["world_size"] == 2 and sync["backend"] == "gloo"
    assert len(sync["weights_sha256"]) == 2 and len(set(sync["weights_sha256"])) == 1  # identical on both ranks
    assert ddp["steps"] == 6  # 6 items, 3 per process per epoch, 2 epochs

    # the same data in batches of 2 in one process: DDP's gradient average is that batch's gradient
    single = copy.deepcopy(params_dict)
    single["pool_size"] = 0
    single["train"]["batch_size"] = 2
    for k in ("checkpoints", "model", "train_reports"):
        single["paths"][k] = str(tmp_path / "single" / k)
    train.train(parse_params(single), progress=False)
    curves = [pd.read_csv(Path(x["paths"]["train_reports"]) / "losses.csv") for x in (d, single)]
    assert list(curves[0].columns) == list(curves[1].columns) and len(curves[0]) == 3
    assert np.allclose(curves[0].to_numpy(), curves[1].to_numpy(), rtol=1e-5, atol=1e-6)  # float32 summation order
    a, b = weights(d["paths"]["model"]), weights(single["paths"]["model"])
    diff = torch.cat([(a[k].float() - b[k].float()).abs().flatten() for k in a])
    # Adam moves every weight by ~lr * sign(gradient): where a gradient is ~0, float noise of the
    # all-reduce flips that sign (measured: 0.6% of weights, by up to 2 lr per step); the rest agree.
    assert diff.median() < 1e-7 and (diff > 1e-5).float().mean() < 0.02


@pytest.mark.long
def test_stargan_trains_under_two_gloo_processes_in_sync(params_dict, tmp_path):
    """StarGAN's steps under DDP: D's double backward (the gradient penalty) and G's update once every
    n_critic steps keep both ranks' weights identical."""
    d = copy.deepcopy(params_dict)
    d["model"], d["data"]["dataset"], d["train"]["nproc_per_node"] = "stargan", "synthetic_multi", 2
    d["stargan"]["n_critic"] = 2
    sync = train_on_two_gloo_processes(d, tmp_path)
    assert sync["world_size"] == 2 and len(set(sync["weights_sha256"])) == 1
