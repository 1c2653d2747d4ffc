"""Threads per process: each compute process takes its share of the cores (cores // processes that
run at once), found from PIPELINE_CONCURRENT, DVC's running queue workers or torchrun's local world
size; an explicit num_threads wins. The sweep timing itself is a benchmark (pipeline/studies/sweep.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from pipeline import runtime
from pipeline.config import ConfigError, parse_params
from pipeline.runtime import concurrency, live_queue_workers, loader_workers, thread_budget


def test_the_budget_is_the_share_of_the_cores_or_the_explicit_setting():
    assert thread_budget("auto", 2, 1) == 2
    assert thread_budget("auto", 2, 2) == 1
    assert thread_budget("auto", 16, 3) == 5
    assert thread_budget("auto", 2, 8) == 1  # never 0
    assert thread_budget(3, 2, 2) == 3


def test_loader_workers_leave_the_cpu_step_its_cores():
    assert loader_workers("auto", 2, torch.device("cpu")) == 0
    assert loader_workers("auto", 16, torch.device("cuda")) == 4
    assert loader_workers("auto", 2, torch.device("cuda")) == 1
    assert loader_workers("auto", 1, torch.device("cuda")) == 0
    assert loader_workers(3, 1, torch.device("cpu")) == 3


def worker_record(celery, n: int, pid: int, returncode=None) -> None:
    celery.mkdir(parents=True, exist_ok=True)
    (celery / f"dvc-exp-worker-{n}.json").write_text(json.dumps({"pid": pid, "returncode": returncode}))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_running_queue_workers_are_counted_from_dvcs_records(tmp_path):
    celery = tmp_path / ".dvc" / "tmp" / "exps" / "celery"
    assert live_queue_workers(tmp_path) == 0
    worker_record(celery, 1, os.getpid())
    worker_record(celery, 2, os.getppid())
    worker_record(celery, 3, dead_pid())  # stale record: the process is gone
    worker_record(celery, 4, os.getpid(), returncode=0)  # ended
    (celery / "dvc-exp-worker-5.json").write_text("{not json")
    assert live_queue_workers(tmp_path) == 2


def test_concurrency_comes_from_the_environment_the_queue_or_torchrun(tmp_path):
    worker_record(tmp_path / ".dvc" / "tmp" / "exps" / "celery", 1, os.getpid())
    worker_record(tmp_path / ".dvc" / "tmp" / "exps" / "celery", 2, os.getppid())
    assert concurrency({}).processes == 1
    queued = {"DVC_EXP_NAME": "full-s0", "DVC_ROOT": str(tmp_path)}
    assert concurrency(queued) == runtime.Concurrency(2, "2 running dvc queue worker(s)")
    assert concurrency({**queued, "PIPELINE_CONCURRENT": "3"}).processes == 3  # explicit wins
    assert concurrency({"LOCAL_WORLD_SIZE": "2"}).processes == 2
    assert concurrency({**queued, "LOCAL_WORLD_SIZE": "2"}).processes == 4
    assert concurrency({"DVC_EXP_NAME": "x", "DVC_ROOT": str(tmp_path / "none")}).processes == 1  # no workers: alone
    with pytest.raises(ConfigError, match="PIPELINE_CONCURRENT='two' must be a positive integer"):
        concurrency({"PIPELINE_CONCURRENT": "two"})


def test_configure_threads_sets_torch_and_the_blas_and_logs_why(monkeypatch, caplog):
    import numpy  # noqa: F401  (its BLAS is loaded, as in a stage)
    from threadpoolctl import threadpool_info, threadpool_limits

    monkeypatch.setenv("PIPELINE_CONCURRENT", "2")
    for name in runtime.BLAS_ENV:
        monkeypatch.delenv(name, raising=False)  # restored after the test
    monkeypatch.setattr(runtime, "cpu_cores", lambda: 4)
    before, blas_before = torch.get_num_threads(), max(p["num_threads"] for p in threadpool_info())
    try:
        with caplog.at_level(logging.INFO, logger="pipeline"):
            assert runtime.configure_threads("auto", "train.num_threads") == 2
        assert torch.get_num_threads() == 2
        assert "torch threads: 2 (train.num_threads=auto: 4 cores / PIPELINE_CONCURRENT=2)" in caplog.text
        assert runtime.configure_threads(1, "evaluate.num_threads") == 1 and torch.get_num_threads() == 1
        assert {p["num_threads"] for p in threadpool_info()} == {1}  # numpy's BLAS (and any other loaded)
        assert all(os.environ[name] == "1" for name in runtime.BLAS_ENV)  # for libraries loaded later
    finally:
        torch.set_num_threads(before)
        threadpool_limits(limits=blas_before)


@pytest.mark.parametrize("value", [0, -1, "all", 1.5, True])
def test_num_threads_is_auto_or_a_positive_integer(params_dict, value):
    params_dict["train"]["num_threads"] = value
    with pytest.raises(ConfigError, match=r"train.num_threads: expected 'auto' \| int \(integers in \[1, 1024\]\)"):
        parse_params(params_dict)


def test_every_threaded_section_accepts_auto_and_integers(params_dict):
    for section in ("train", "translate", "segmenter", "classifier", "evaluate"):
        params_dict[section]["num_threads"] = 3
    params_dict["train"]["num_workers"] = 2
    p = parse_params(params_dict)
    assert (p.train.num_threads, p.translate.num_threads, p.segmenter.num_threads, p.classifier.num_threads,
            p.evaluate.num_threads) == (3, 3, 3, 3, 3)
    assert p.train.num_workers == 2


def test_the_sweep_copies_what_git_sees_and_tables_the_ratio(tmp_path):
    from pipeline.studies import sweep

    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    (ws / ".gitignore").write_text("data/\n")
    (ws / "tracked.txt").write_text("a")
    subprocess.run(["git", "add", "-A"], cwd=ws, check=True)
    (ws / "tracked.txt").write_text("edited")  # uncommitted edits travel
    (ws / "new.py").write_text("b")  # untracked, not ignored: travels
    (ws / "data").mkdir()
    (ws / "data" / "big.bin").write_text("c")  # ignored: stays
    repo = sweep.scratch_copy(ws, tmp_path / "scratch")
    assert (repo / "tracked.txt").read_text() == "edited" and (repo / "new.py").exists()
    assert not (repo / "data").exists()
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""

    mode = {"jobs": 1, "failed": [], "threads": [{"full-s0": ["2 (train.num_threads=auto: 2 cores / 1 running dvc "
                                                                  "queue worker(s))"]}]}
    report = {"device": "2 CPU cores", "configs": ["full"], "seed": 0, "set": [], "jobs": [1, 2], "torch": "x",
              "date": "d", "command": "c",
              "modes": {"j1": {**mode, "label": "-j 1", "wall_s": [100.0, 120.0], "median_s": 110.0},
                        "j2": {**mode, "label": "-j 2", "jobs": 2, "wall_s": [50.0, 60.0, 70.0], "median_s": 60.0}}}
    md = sweep.markdown(report)
    assert "| -j 1 | 1 | 2 (train.num_threads=auto: 2 cores / 1 running dvc queue worker(s)) | 100, 120 | 110 | 1.00 |" in md
    assert "| -j 2 | 2 |" in md and "| 50, 60, 70 | 60 | 1.83 |" in md
    assert "Machine limit" not in md  # not measured: nothing claimed
    report.update(cores=2, machine_limit=[{"one_process": 8.0, "side_by_side": 16.0, "ratio": 2.0},
                                          {"error": "failed"}, {"one_process": 8.0, "side_by_side": 12.0, "ratio": 1.5}])
    md = sweep.markdown(report)
    # the median limit of the measurements that worked (1.75x); the sweep's 1.83x is 105% of it
    assert "16 vs 8 (2.00x); 12 vs 8 (1.50x); median **1.75x**" in md and "1.83x, is **105%** of it" in md
