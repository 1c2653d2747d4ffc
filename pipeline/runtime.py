"""Where and how reproducibly a stage computes: device choice, CPU threads, determinism switches."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_device(name: str, key: str) -> torch.device:
    """`auto` = CUDA when visible, else the CPU; `key` is the param that asked (for the error)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}=cuda but no CUDA device is visible; set {key} to auto or cpu")
    return torch.device(name)


PEAK_KINDS = {"cuda_allocated": "CUDA max allocated", "rss": "process max RSS"}  # what peak_memory measured


def peak_memory(device: torch.device) -> tuple[int, str]:
    """The most memory this process has held, in bytes, and what that measures: on CUDA the tensors torch
    allocated on the device (since the start or the last reset_peak_memory_stats); on the CPU the process's
    peak resident set (getrusage; Linux counts KiB), which includes the interpreter and torch's libraries."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_allocated"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss"


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed torch's global generator; with `deterministic`, ask for deterministic kernels."""
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS for determinism
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# --- CPU threads ------------------------------------------------------------------------------
# torch starts as many OpenMP threads as the machine has cores, in every process. Two queued
# experiments on two cores then run four spinning threads, which on the embedded model is many times
# slower than one thread each (reports/benchmark/sweep-cpu.md). Each compute process therefore takes
# its share of the cores: cores // processes that run at the same time.

CONCURRENCY_ENV = "PIPELINE_CONCURRENT"  # processes sharing the machine, set by a sweep or by hand


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def live_queue_workers(repo_root: Path) -> int:
    """Running `dvc queue` workers of a repository. Each runs one experiment at a time, so while a queue
    runs this is the number of experiments computing side by side. DVC keeps a record per worker in
    .dvc/tmp/exps/celery/dvc-exp-worker-<n>.json (dvc-task's ManagedProcess: pid, and returncode once
    it ended); a record whose process is gone is stale."""
    n = 0
    for info in (repo_root / ".dvc" / "tmp" / "exps" / "celery").glob("dvc-exp-worker-*.json"):
        try:
            record = json.loads(info.read_text())
            if record.get("returncode") is None:
                os.kill(int(record["pid"]), 0)  # signal 0: does the process exist
                n += 1
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return n


@dataclass(frozen=True)
class Concurrency:
    processes: int  # compute processes sharing this machine's cores, this one included
    source: str  # where the number came from, for the log


def concurrency(env: Mapping[str, str] = os.environ) -> Concurrency:
    """How many compute processes share the cores: PIPELINE_CONCURRENT if set; else, inside a queued DVC
    experiment (DVC sets DVC_EXP_NAME, and DVC_ROOT to the repository), the live queue workers; else 1.
    Times the processes torchrun starts on this node (LOCAL_WORLD_SIZE)."""
    local = int(env.get("LOCAL_WORLD_SIZE", "1") or 1)
    if env.get(CONCURRENCY_ENV):
        value = env[CONCURRENCY_ENV]
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"environment variable {CONCURRENCY_ENV}={value!r} must be a positive integer "
                              f"(the number of processes sharing the cores); unset it for auto-detection")
        n, source = int(value), f"{CONCURRENCY_ENV}={value}"
    elif env.get("DVC_EXP_NAME") and env.get("DVC_ROOT"):
        workers = live_queue_workers(Path(env["DVC_ROOT"]))
        # 0 workers: a `dvc exp run` in the foreground, the only process
        n, source = max(1, workers), (f"{workers} running dvc queue worker(s)" if workers else "dvc exp run, not queued")
    else:
        n, source = 1, "one process"
    if local > 1:
        source += f" x {local} torchrun processes"
    return Concurrency(n * local, source)


def thread_budget(setting: int | str, cores: int, processes: int) -> int:
    """Intra-op threads of one process: the explicit setting, or its share of the cores ("auto")."""
    return setting if isinstance(setting, int) else max(1, cores // processes)


def loader_workers(setting: int | str, threads: int, device: torch.device) -> int:
    """DataLoader worker processes. "auto": none on the CPU, where the step needs every thread of the
    budget and the main process loads a pre-resized image in ~1% of a step (reports/benchmark/); on
    CUDA the step runs on the GPU, so the CPU budget less the main process loads, at most 4."""
    if isinstance(setting, int):
        return setting
    return 0 if device.type == "cpu" else max(0, min(4, threads - 1))


BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def configure_threads(setting: int | str, key: str) -> int:
    """Give this process its thread budget and log where it came from: torch's intra-op and inter-op
    threads, and the BLAS under numpy and scipy (FID's matrix square root runs there, and OpenBLAS
    starts a spinning thread per core of its own): threadpoolctl caps the libraries already loaded,
    the environment those loaded later (scipy loads its own OpenBLAS on first use)."""
    from threadpoolctl import threadpool_limits

    c = concurrency()
    n = thread_budget(setting, cpu_cores(), c.processes)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass  # fixed once per process; a second stage run in the same process (tests) keeps the first
    os.environ.update(dict.fromkeys(BLAS_ENV, str(n)))
    threadpool_limits(limits=n)
    how = f"{key}={setting}" if isinstance(setting, int) else f"{key}=auto: {cpu_cores()} cores / {c.source}"
    log.info("torch threads: %d (%s)", n, how)
    return n
