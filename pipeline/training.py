"""The bookkeeping of a training, apart from its orchestration (stages/train.py): the learning-rate
schedule, the training's identity (fingerprint), and the run book (where it stands, its loss curve).
Every function here is pure or touches only the objects it is given."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.codedeps import code_digest
from pipeline.config import Params, execution_only_keys, flatten, to_dict
from pipeline.errors import StageError

# train.lr_policy -> scheduler steps taken before 0-based epoch k, minus k (see lr_factor)
LR_POLICIES: dict[str, int] = {"paper": 1, "authors_current": 2}

# Params that change how a run is executed or reported but not what it computes (knob(results=False)): a
# checkpoint made under other values of these may be resumed.
EXECUTION_ONLY = execution_only_keys()


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int, policy: str = "paper") -> float:
    """Learning-rate multiplier during 0-based `epoch` under the authors' 'linear' policy,
    1 - max(0, e - n_epochs) / (n_epochs_decay + 1), where e counts the scheduler's steps so far.
    paper: the scheduler steps after each epoch (the authors' code until 2020; the paper's "same
    learning rate for the first 100 epochs and linearly decay the rate to zero over the next 100"):
    e = epoch + 1, so n_epochs constant epochs, then n_epochs_decay epochs at d/(d+1) ... 1/(d+1).
    authors_current: their train.py steps it at the start of each epoch with epoch_count 1: e = epoch + 2,
    so the decay starts one epoch earlier and the last epoch runs at lr 0 (it learns nothing)."""
    shift = LR_POLICIES[policy]
    return 1.0 - max(0, epoch + shift - n_epochs) / float(n_epochs_decay + 1)


def fingerprint(params: Params, manifest_text: str, world: int = 1) -> str:
    """Identity of a training: params (less execution-only ones), data manifest, the code the train stage
    runs (pipeline/codedeps.py), and the number of processes (it decides the shards). It names the
    training's resume state, its model file and (as a tag) its MLflow run."""
    relevant = {k: v for k, v in flatten(to_dict(params)).items()
                if k not in EXECUTION_ONLY and k.split(".")[0] not in EXECUTION_ONLY}
    blob = json.dumps({"params": relevant, "data": hashlib.sha256(manifest_text.encode()).hexdigest(),
                       "code": code_digest("pipeline.stages.train"), "world": world}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class RunBook:
    """The run's bookkeeping: where it stands, its loss curve, and how much of it has been made durable.

    step: optimisation steps done; history: logged rows ({step, epoch, lr, <loss>...}); window: losses of
    the steps since the last logged row; sent: the last step of the curve MLflow holds; saved: the step of
    the last checkpoint written. The curve reaches MLflow only when a checkpoint holding it is on disk, so
    a crash never leaves points the resumed run would log again. seconds: wall time of the training loop
    so far (its steps, checkpoints and sample grids), summed over resumed sessions; it goes to MLflow
    (train/seconds) with the curve and never into a checkpoint, which must be the same bytes for the
    same training.
    """

    step: int = 0
    history: list[dict] = field(default_factory=list)
    window: list[dict] = field(default_factory=list)
    sent: int = -1
    saved: int = -1
    seconds: float = 0.0

    def to_checkpoint(self) -> dict:
        return {"step": self.step, "history": self.history, "window": self.window}

    @classmethod
    def from_checkpoint(cls, state: dict) -> RunBook:
        return cls(state["step"], state["history"], state["window"], saved=state["step"])

    def record(self, losses: dict[str, float], epoch: int, lr: float, log_every: int, total: int) -> dict | None:
        """Count one step; every `log_every` steps (and at the last) the window's mean becomes a row."""
        self.step += 1
        self.window.append(losses)
        if self.step % log_every and self.step != total:
            return None
        # each loss averaged over the steps that computed it (StarGAN's G terms: one step in n_critic)
        keys = dict.fromkeys(k for w in self.window for k in w)
        row = {"step": self.step, "epoch": epoch + 1, "lr": lr,
               **{k: float(np.mean([w[k] for w in self.window if k in w])) for k in keys}}
        self.history.append(row)
        self.window.clear()
        return row

    def unsent(self) -> list[dict]:
        """The curve's rows MLflow lacks, the last one with the training's seconds so far."""
        rows = [row for row in self.history if row["step"] > self.sent]
        return rows[:-1] + [{**rows[-1], "seconds": self.seconds}] if rows else []


def check_finite(losses: dict[str, float], step: int, ckpt_dir: object) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise StageError(f"non-finite loss at step {step}: {bad}; training stopped, the last good checkpoint in "
                         f"{ckpt_dir} is kept. Lower train.lr, or check the data")


def history_csv(history: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def read_history_csv(text: str) -> list[dict[str, float]]:
    """The rows history_csv wrote, as numbers (an empty cell, a loss a model did not log that step, is left out)."""
    return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(io.StringIO(text))]
