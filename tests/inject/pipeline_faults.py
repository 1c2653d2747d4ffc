"""Fault injection for the robustness tests: kill the training process with SIGKILL (no cleanup code,
no `finally`, no atexit runs: what an OOM killer or a pulled plug does) at a chosen point.

PIPELINE_FAULT="<point>:<n>" picks the point and which occurrence of it; see FAULTS. The point `pause`
holds the training at given steps instead, for tests that act on the world around it.
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Callable


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def counter(n: int) -> Callable[[], bool]:
    seen = [0]

    def hit() -> bool:
        seen[0] += 1
        return seen[0] == n
    return hit


def before_every_step(call: Callable[[], None]) -> None:
    """`call()` before each optimisation step of this process, whichever model trains."""
    from pipeline.models.base import GANModel
    from pipeline.models.bicyclegan.model import BicycleGAN  # noqa: F401  (imported: a subclass of GANModel)
    from pipeline.models.cut.model import CUT  # noqa: F401
    from pipeline.models.cyclegan.model import CycleGAN  # noqa: F401
    from pipeline.models.pix2pix.model import Pix2Pix  # noqa: F401
    from pipeline.models.stargan.model import StarGAN  # noqa: F401

    for cls in GANModel.__subclasses__():  # every model's own step
        real = cls.train_step

        def step(self, batch, real=real):
            call()
            return real(self, batch)
        cls.train_step = step


def at_step(n: int) -> None:
    """Killed inside the n-th optimisation step of this process (weights half-updated in memory)."""
    hit = counter(n)
    before_every_step(lambda: die() if hit() else None)


def mid_checkpoint_write(n: int) -> None:
    """Killed after half of the bytes of the n-th torch.save of pipeline.checkpoint reached the disk."""
    from pipeline import checkpoint

    hit, real = counter(n), checkpoint.torch.save

    def save(obj, f, *args, **kwargs):
        if not hit():
            return real(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # f: the open temporary file checkpoint.write gives
        f.flush()
        os.fsync(f.fileno())
        die()
    checkpoint.torch.save = save


def between_renames(n: int) -> None:
    """Killed the n-th time latest.pt has become previous.pt, before the new latest.pt is in place."""
    from pipeline import checkpoint

    hit, real = counter(n), checkpoint.os.replace

    def replace(src, dst):
        real(src, dst)
        if str(dst).endswith("previous.pt") and hit():
            die()
    checkpoint.os.replace = replace


def before_mlflow_batch(n: int) -> None:
    """Killed just before the n-th batch of the loss curve is sent to MLflow (checkpoint already on disk)."""
    from pipeline.tracker import Tracker

    hit, real = counter(n), Tracker.log_rows

    def log_rows(self, *args, **kwargs):
        if hit():
            die()
        return real(self, *args, **kwargs)
    Tracker.log_rows = log_rows


def after_final_model(n: int) -> None:
    """Killed right after the n-th final checkpoint (paths.model) was written: reports and MLflow
    artifacts not yet."""
    from pipeline import checkpoint

    hit, real = counter(n), checkpoint.save

    def save(path, state):
        real(path, state)
        if hit():
            die()
    checkpoint.save = save


def pause_at_steps(*steps: int) -> None:
    """Not a fault: before each of these training steps the process writes <PIPELINE_PAUSE_DIR>/at-<step> and
    waits for go-<step> there, so that a test acts (stops a server, starts it again) at a known step."""
    folder, done = Path(os.environ["PIPELINE_PAUSE_DIR"]), [0]

    def hold() -> None:
        done[0] += 1
        if done[0] in steps:
            (folder / f"at-{done[0]}").touch()
            while not (folder / f"go-{done[0]}").exists():
                time.sleep(0.1)
    before_every_step(hold)


FAULTS = {"step": at_step, "checkpoint-write": mid_checkpoint_write, "checkpoint-rename": between_renames,
          "mlflow": before_mlflow_batch, "export": after_final_model, "pause": pause_at_steps}


def install(spec: str) -> None:
    """`<point>:<n>[,<n>...]`."""
    point, ns = spec.split(":")
    FAULTS[point](*map(int, ns.split(",")))
