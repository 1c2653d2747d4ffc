"""Stage `train`: data/prepared -> the trained model (paths.model), loss curves and sample grids
(paths.train_reports), and one MLflow run.

Resumable: a checkpoint is written every `train.checkpoint_every` steps to paths.checkpoints (kept
across runs by DVC's `persist: true`); a re-run with the same params and data continues from it and
ends with the same weights as an uninterrupted run. A checkpoint made with other params, data or
training code is ignored (its fingerprint differs), so an experiment never resumes another one's state.
With train.nproc_per_node * train.nnodes > 1 the stage relaunches itself under torchrun (DDP).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline import checkpoint, distributed
from pipeline.artifacts import manifest as manifest_file
from pipeline.artifacts import model as model_file
from pipeline.cli import run_stage, stage_main
from pipeline.codedeps import code_digest
from pipeline.config import Params, flatten, to_dict
from pipeline.data.datasets import (
    AlignedDataset,
    MultiDomainDataset,
    UnalignedDataset,
    batches,
    grid,
    list_images,
    load_tensor,
)
from pipeline.domains import TWO_DOMAINS, test_dir, train_dir
from pipeline.errors import StageError
from pipeline.io import atomic_dir, save_png
from pipeline.models.base import GANModel
from pipeline.models.registry import MODELS, model_domains, model_pair
from pipeline.runtime import configure_threads, loader_workers, resolve_device, set_determinism
from pipeline.tracking import NoTracker, Tracker, git_rev, tracking_uri, ui_hint

log = logging.getLogger("pipeline")
SAMPLES = 4  # test images per direction in the sample grids

# Params that change how a run is executed or reported but not what it computes: a checkpoint made
# under other values of these may be resumed.
EXECUTION_ONLY = {"translate", "mlflow", "paths", "train.checkpoint_every", "train.log_every",
                  "train.num_workers", "train.num_threads", "train.device", "train.rdzv_endpoint", "train.dist_backend"}


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


# train.lr_policy -> scheduler steps taken before 0-based epoch k, minus k (see lr_factor)
LR_POLICIES: dict[str, int] = {"paper": 1, "authors_current": 2}


def fingerprint(params: Params, manifest_text: str, world: int = 1) -> str:
    """Identity of a training: params (less execution-only ones), data manifest, the code this stage
    runs (pipeline/codedeps.py), and the number of processes (it decides the shards)."""
    relevant = {k: v for k, v in flatten(to_dict(params)).items()
                if k not in EXECUTION_ONLY and k.split(".")[0] not in EXECUTION_ONLY}
    blob = json.dumps({"params": relevant, "data": hashlib.sha256(manifest_text.encode()).hexdigest(),
                       "code": code_digest("pipeline.stages.train"), "world": world}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class RunBook:
    """The run's bookkeeping: where it stands, its loss curve, and how much of it has been made durable.

    step: optimisation steps done; history: logged rows ({step, epoch, lr, <loss>...}); window: losses of
    the steps since the last logged row; run_id: the MLflow run; sent: the last step of the curve MLflow
    holds; saved: the step of the last checkpoint written. The curve reaches MLflow only when a
    checkpoint holding it is on disk, so a crash never leaves points the resumed run would log again.
    seconds: wall time of the training loop so far (its steps, checkpoints and sample grids), summed over
    resumed sessions (MLflow's train/seconds; kept out of the model file, which must be the same bytes for
    the same training).
    """

    step: int = 0
    history: list[dict] = field(default_factory=list)
    window: list[dict] = field(default_factory=list)
    run_id: str | None = None
    sent: int = -1
    saved: int = -1
    seconds: float = 0.0

    def to_checkpoint(self) -> dict:
        return {"step": self.step, "history": self.history, "window": self.window, "mlflow_run_id": self.run_id,
                "seconds": self.seconds}

    @classmethod
    def from_checkpoint(cls, state: dict) -> RunBook:
        return cls(state["step"], state["history"], state["window"], state["mlflow_run_id"], saved=state["step"],
                   seconds=state.get("seconds", 0.0))

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
        return [row for row in self.history if row["step"] > self.sent]


# Sections of params.yaml an MLflow run does not hold: where outputs go and where the run is tracked
# say nothing about what was trained (the run's own artifacts and store are its location).
NOT_LOGGED = ("mlflow", "paths")


def run_params(params: Params) -> dict[str, object]:
    """The params an MLflow run holds, flattened (`cyclegan.ngf`): the trained model's own section and
    the top-level knobs it reads, plus the sections every model shares (data, prepare, train, translate,
    evaluator, evaluate). Other models' sections are left out, and so are `data.synthetic` and
    `data.local` unless they are the data: they did not take part, and as columns they would bury the knobs."""
    other_models = set(MODELS) - {params.model}
    unused_knobs = {k for name, entry in MODELS.items() for k in entry.knobs} - set(MODELS[params.model].knobs)
    d = {k: v for k, v in to_dict(params).items() if k not in other_models | unused_knobs | set(NOT_LOGGED)}
    unused_data = {"synthetic", "local"} - {params.data.dataset}  # the settings of the other dataset kinds
    d["data"] = {k: v for k, v in d["data"].items() if k not in unused_data}
    return flatten(d)


def run_tags(params: Params, exp_name: str | None) -> dict[str, str]:
    """Tags that find and group runs: `config` and `study` (from params mlflow.config / mlflow.study,
    set by the study commands), `seed`, the model and dataset, the git commit, and the DVC experiment."""
    tags = {"seed": str(params.seed), "pipeline.model": params.model, "pipeline.dataset": params.data.dataset,
            "pipeline.stage": "train", "git.rev": git_rev()}
    labels = {"study": params.mlflow.study, "config": params.mlflow.config, "dvc.exp_name": exp_name}
    return {**tags, **{k: v for k, v in labels.items() if v}}


def start_tracking(params: Params, run_id: str | None) -> Tracker:
    exp_name = os.environ.get("DVC_EXP_NAME")
    return Tracker(tracking_uri(params.mlflow.tracking_uri), params.mlflow.experiment, run_id=run_id,
                   run_name=exp_name or f"{params.model}-{params.data.dataset}", tags=run_tags(params, exp_name))


def build_dataset(params: Params, prepared: Path, manifest: dict):
    t = params.train
    if MODELS[params.model].multi_domain:
        dirs = [prepared / train_dir(d) for d in manifest["domains"]]
        return MultiDomainDataset(dirs, crop=t.crop_size, flip=t.flip, seed=params.seed)
    if len(manifest["domains"]) != params.n_domains:
        raise StageError(f"{prepared} holds {len(manifest['domains'])} domains but params select {params.n_domains} "
                         f"(data.dataset, data.domains); re-prepare the data: dvc repro prepare")
    if MODELS[params.model].paired:
        pairs = manifest["pairs"]["train"]
        if not pairs:
            raise StageError(f"model={params.model} needs paired training data, but {manifest['dataset']} has none")
        return AlignedDataset(prepared / pairs[0], prepared / pairs[1], crop=t.crop_size, flip=t.flip, seed=params.seed)
    a, b = model_domains(params, manifest)
    return UnalignedDataset(prepared / train_dir(a), prepared / train_dir(b), crop=t.crop_size, flip=t.flip,
                            seed=params.seed)


def sample_batch(prepared: Path, crop: int, folders: list[str]) -> tuple[torch.Tensor, ...]:
    """The first test images of each domain, centre-cropped to the training size (fixed across runs)."""
    def load(sub: str) -> torch.Tensor:
        x = torch.stack([load_tensor(p) for p in list_images(prepared / sub)[:SAMPLES]])
        o = (x.shape[-1] - crop) // 2
        return x[..., o:o + crop, o:o + crop]
    return tuple(load(f) for f in folders)


def sample_grid(model: GANModel, samples: tuple[torch.Tensor, ...], device: torch.device) -> np.ndarray:
    model.train(False)
    titles, rows = model.sample_rows(*(s.to(device) for s in samples))
    picture = grid(rows, titles)
    model.train()
    return picture


def check_finite(losses: dict[str, float], step: int, ckpt_dir: Path) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise StageError(f"non-finite loss at step {step}: {bad}; training stopped, the last good checkpoint in "
                         f"{ckpt_dir} is kept. Lower train.lr, or check the data")


def send_curve(book: RunBook, tracker: Tracker) -> None:
    rows = book.unsent()
    if rows:
        tracker.log_rows(rows, "train/", skip=("step", "epoch"))
        book.sent = rows[-1]["step"]


def save_checkpoint(book: RunBook, model: GANModel, d: distributed.Dist, ckpt_dir: Path, fp: str, tracker: Tracker) -> None:
    """Every rank takes part (its pools and random state are gathered); rank 0 writes; then the curve
    up to this checkpoint goes to MLflow."""
    if book.saved != book.step:
        ranks = distributed.gather({"model": model.local_state(), "torch_rng": torch.get_rng_state()}, d)
        if d.main:
            checkpoint.save_resume_state(ckpt_dir, {"fingerprint": fp, "model": model.state_dict(), "ranks": ranks,
                                                    **book.to_checkpoint()})
        book.saved = book.step
    send_curve(book, tracker)


def resume(ckpt_dir: Path, fp: str, d: distributed.Dist) -> dict | None:
    """The resume state of this very experiment, or None."""
    state = checkpoint.load_resume_state(ckpt_dir)
    if state is not None and state["fingerprint"] != fp:
        if d.main:
            log.info("ignoring the checkpoint in %s: it was made with other params, data or training code", ckpt_dir)
        return None
    return state


def train(params: Params, *, progress: bool = True) -> dict:
    """Run (or resume) one training."""
    t, paths = params.train, params.paths
    threads = configure_threads(t.num_threads, "train.num_threads")
    prepared, ckpt_dir = Path(paths.prepared), Path(paths.checkpoints)
    manifest, manifest_text = manifest_file.read(prepared)
    manifest_file.check_test_set(params, manifest)
    d, device = distributed.setup(t.dist_backend, resolve_device(t.device, "train.device"))
    if t.precision == "fp16" and device.type != "cuda":
        raise StageError("train.precision=fp16 needs CUDA; this run is on the CPU: use bf16 or fp32")
    workers = loader_workers(t.num_workers, threads, device)
    set_determinism(params.seed, t.deterministic)
    torch.backends.cudnn.benchmark = t.cudnn_benchmark

    model = MODELS[params.model].build(params, device, d.rank)
    data = build_dataset(params, prepared, manifest)
    epochs = t.n_epochs + t.n_epochs_decay
    steps_per_epoch = len(distributed.shard(batches(len(data), t.batch_size), d))
    if steps_per_epoch == 0:
        raise StageError(f"{len(data)} training items make fewer batches than the {d.world} processes; lower "
                         f"train.batch_size or train.nproc_per_node * train.nnodes")
    total_steps = epochs * steps_per_epoch
    fp = fingerprint(params, manifest_text, d.world)

    state = resume(ckpt_dir, fp, d)
    book = RunBook()
    if state is not None:
        model.load_state_dict(state["model"])
        model.load_local_state(state["ranks"][d.rank]["model"])
        torch.set_rng_state(state["ranks"][d.rank]["torch_rng"])
        book = RunBook.from_checkpoint(state)
        if d.main:
            log.info("resuming from step %d of %d (%s)", book.step, total_steps, ckpt_dir)
    model.configure(precision=t.precision, channels_last=t.channels_last, compile=t.compile, distributed=d.active,
                    ddp_device_ids=[device.index] if d.active and device.type == "cuda" else None)
    tracker = start_tracking(params, book.run_id) if d.main else NoTracker()
    book.run_id = tracker.run_id
    # after a crash between a checkpoint and its curve reaching MLflow, the rows MLflow lacks are the
    # checkpoint's rows past the last step it holds
    book.sent = tracker.last_step("train/lr") if state is not None else -1
    domains = model_domains(params, manifest)
    samples = sample_batch(prepared, t.crop_size, [test_dir(d) for d in domains])
    bar = tqdm(total=total_steps, initial=book.step, desc=f"train {params.model}", unit="step",
               disable=not (progress and d.main))
    try:
        if state is None:
            save_checkpoint(book, model, d, ckpt_dir, fp, tracker)  # step 0: a restart reopens this MLflow run
        tracker.log_params(run_params(params))  # only what the run lacks: a crash may have cut it short
        model.train()
        tick = time.perf_counter()
        while book.step < total_steps:
            epoch, first = divmod(book.step, steps_per_epoch)
            lr = model.set_lr_factor(lr_factor(epoch, t.n_epochs, t.n_epochs_decay, t.lr_policy))
            data.set_epoch(epoch)
            loader = DataLoader(data, batch_sampler=distributed.shard(batches(len(data), t.batch_size), d)[first:],
                                num_workers=workers, pin_memory=device.type == "cuda")
            for batch in loader:
                losses = distributed.mean_over_ranks(model.train_step(batch), d)
                check_finite(losses, book.step + 1, ckpt_dir)
                row = book.record(losses, epoch, lr, t.log_every, total_steps)
                book.seconds += time.perf_counter() - tick
                tick = time.perf_counter()
                bar.update(1)
                if row:
                    bar.set_postfix({k: f"{row[k]:.3f}" for k in ("G", "D_A", "D_B", "D") if k in row})
                if book.step % t.checkpoint_every == 0:
                    save_checkpoint(book, model, d, ckpt_dir, fp, tracker)
            if d.main:
                log_picture(tracker, sample_grid(model, samples, device), f"samples/epoch_{epoch + 1:03d}.png")
        save_checkpoint(book, model, d, ckpt_dir, fp, tracker)
        digests = distributed.gather(distributed.weights_digest(n.module for n in model.nets.values()), d)
        if len(set(digests)) > 1:
            raise StageError(f"the {d.world} processes ended with different weights ({digests}): their gradient "
                             f"synchronisation failed; nothing was exported")
        result = {"steps": book.step, "model": paths.model, "mlflow_run_id": None}
        if d.main:
            sync = {"world_size": d.world, "backend": d.backend, "weights_sha256": digests} if d.active else None
            result = export(params, model, book.history, sample_grid(model, samples, device), fp, tracker, sync,
                            manifest["domains"], model_pair(params, manifest), book.seconds)
            tracker.finish()
        return result
    except BaseException:
        # an error (not a kill): the curve up to the failure helps diagnose it; a resume skips what was sent
        with contextlib.suppress(Exception):
            send_curve(book, tracker)
        with contextlib.suppress(Exception):
            tracker.finish("FAILED")
        raise
    finally:
        bar.close()
        distributed.teardown(d)


def log_picture(tracker: Tracker, image: np.ndarray, artifact: str) -> None:
    """Log a picture to the MLflow run under `artifact` (a relative path with a folder)."""
    folder, name = artifact.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        save_png(Path(tmp) / name, image)
        tracker.log_artifact(Path(tmp) / name, folder)


def history_csv(history: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def export(params: Params, model: GANModel, history: list[dict], samples: np.ndarray, fp: str,
           tracker: Tracker, sync: dict | None = None, domains: dict[str, str] | None = None,
           pair: list[str] | None = None, seconds: float = 0.0) -> dict:
    """Write the model file, the loss curves and the sample grid, and attach them to the MLflow run."""
    paths = params.paths
    steps = history[-1]["step"] if history else 0
    model_file.save(paths.model, model_file.state(params, model, fp, tracker.run_id, tracker.uri, steps, sync, domains,
                                                  pair))
    with atomic_dir(paths.train_reports) as tmp:
        (tmp / "losses.csv").write_text(history_csv(history))
        save_png(tmp / "samples.png", samples)
    reports = Path(paths.train_reports)
    # what a comparison of models across studies needs beside the metrics: their size and training time
    tracker.log_metrics({"train/seconds": seconds,
                         "model/parameters": sum(p.numel() for n in model.nets.values() for p in n.module.parameters()),
                         "model/generator_parameters": sum(p.numel() for k in model.generators
                                                           for p in model.nets[k].module.parameters())})
    tracker.log_artifact(reports / "losses.csv")
    tracker.log_artifact(reports / "samples.png")
    if params.mlflow.log_model:
        tracker.log_artifact(paths.model, "checkpoint")
        from pipeline import mlflow_model  # lazy: it imports mlflow

        source = test_dir((pair or TWO_DOMAINS)[0])
        example = list_images(Path(paths.prepared) / source)[0].read_bytes()  # the models' input example
        mlflow_model.log_generators(tracker.uri, tracker.run_id, paths.model, params.model, example,
                                    params.mlflow.register_as, domains, pair)
    return {"model": paths.model, "mlflow_run_id": tracker.run_id, "steps": steps,
            "mlflow_ui": ui_hint(tracker.uri, tracker.experiment_id)}


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    t = params.train
    if t.nproc_per_node * t.nnodes > 1 and not distributed.launched():
        # the params switch for data-parallel training: relaunch this stage under torchrun
        cmd = distributed.torchrun_command(t.nproc_per_node, t.nnodes, t.rdzv_endpoint,
                                           sys.argv[1:] if argv is None else argv)
        log.info("launching %s", " ".join(cmd))
        raise SystemExit(subprocess.run(cmd).returncode)
    result = run_stage(train, params)
    if distributed.launched() and int(os.environ["RANK"]) != 0:
        return  # rank 0 reports
    print(f"trained {params.model} for {result['steps']} steps -> {result['model']} (MLflow run {result['mlflow_run_id']})")
    if result.get("mlflow_ui"):
        print(result["mlflow_ui"])


if __name__ == "__main__":
    main()
