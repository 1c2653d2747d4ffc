"""Data-parallel training: torchrun starts one process per GPU (or CPU slot), each wraps every
network in its own DistributedDataParallel, trains on its shard of each epoch and averages gradients.

Rank 0 alone talks to MLflow, writes checkpoints and outputs; the other ranks compute. What differs
per rank (image pools, random streams) is gathered into the checkpoint so a resumed run continues
every rank's own state. At the end every rank's weights are hashed and compared: ranks that drifted
apart (a broken synchronisation) fail the stage instead of silently writing rank 0's weights.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched() -> bool:
    """True inside a torchrun process group of more than one process."""
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(backend: str, device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun prepared (a no-op outside torchrun); one GPU per process."""
    if not launched():
        return Dist(), device
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = ("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return Dist(rank, world, local, backend), device


def teardown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(nproc_per_node: int, nnodes: int, rdzv_endpoint: str | None, argv: list[str]) -> list[str]:
    """The command that relaunches the train stage under torchrun with these params."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}", f"--nnodes={nnodes}"]
    cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"] if nnodes > 1 else ["--standalone"]
    return cmd + ["-m", "pipeline.stages.train", *argv]


def shard(batches: list[list[int]], d: Dist) -> list[list[int]]:
    """Rank r's batches of an epoch: every world-th one from r, the same count on every rank (the
    tail that cannot be shared evenly is dropped, as DistributedSampler(drop_last=True) does)."""
    if not d.active:
        return batches
    return batches[d.rank::d.world][: len(batches) // d.world]


def mean_over_ranks(values: dict[str, float], d: Dist) -> dict[str, float]:
    """The losses averaged over ranks, so every rank logs (and checks for NaN) the same numbers."""
    if not d.active:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / d.world).tolist(), strict=True))


def gather(obj, d: Dist) -> list:
    """obj of every rank, in rank order, on every rank."""
    if not d.active:
        return [obj]
    out: list = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def weights_digest(modules) -> str:
    """Hash of the learned parameters. Buffers are left out: BatchNorm running statistics are
    per-rank by design (DDP broadcasts rank 0's at each wrapped forward; rank 0's are exported)."""
    h = hashlib.sha256()
    for m in modules:
        for k, v in sorted(m.named_parameters()):
            h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
