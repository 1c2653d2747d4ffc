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
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline import checkpoint, distributed
from pipeline.artifacts import manifest as manifest_file
from pipeline.artifacts import model as model_file
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params, logged_params
from pipeline.data.datasets import (
    AlignedDataset,
    MultiDomainDataset,
    UnalignedDataset,
    batches,
    grid,
    list_images,
    load_tensor,
)
from pipeline.data.synthetic import domain_count
from pipeline.domains import TWO_DOMAINS, test_dir, train_dir
from pipeline.errors import StageError
from pipeline.io import atomic_dir, save_png
from pipeline.models.base import GANModel
from pipeline.models.registry import MODELS, model_domains, model_pair
from pipeline.runtime import configure_threads, loader_workers, peak_memory, resolve_device, set_determinism
from pipeline.tracker import NoTracker, Tracker
from pipeline.tracking import run_tags, tracking_uri, ui_hint
from pipeline.training import RunBook, check_finite, fingerprint, history_csv, lr_factor

log = logging.getLogger("pipeline")
SAMPLES = 4  # test images per direction in the sample grids
OUTBOX = "mlflow-outbox"  # in paths.checkpoints: per run, the files a tracking server was down for (tracker.Tracker)

@dataclass
class Training:
    """One training, resolved from params and the prepared data before its first step: the model, the
    data, the processes, the schedule and the training's identity (`fp`, training.fingerprint)."""

    params: Params
    model: GANModel
    data: torch.utils.data.Dataset
    d: distributed.Dist
    device: torch.device
    workers: int
    steps_per_epoch: int
    fp: str
    manifest: dict
    samples: tuple[torch.Tensor, ...]  # the test images of the sample grids

    @property
    def total_steps(self) -> int:
        t = self.params.train
        return (t.n_epochs + t.n_epochs_decay) * self.steps_per_epoch

    def epoch_batches(self, first: int = 0) -> list[list[int]]:
        """This rank's batches of an epoch from its `first`; a model that needs full batches (BicycleGAN's
        split) skips the short last one, as the authors' loop does."""
        p = self.params
        all_batches = batches(len(self.data), p.train.batch_size, drop_last=MODELS[p.model].full_batch(p))
        return distributed.shard(all_batches, self.d)[first:]


def build_dataset(params: Params, prepared: Path, manifest: dict):
    t = params.train
    if MODELS[params.model].multi_domain:
        dirs = [prepared / train_dir(d) for d in manifest["domains"]]
        return MultiDomainDataset(dirs, crop=t.crop_size, flip=t.flip, seed=params.seed)
    if len(manifest["domains"]) != domain_count(params.data):
        raise StageError(f"{prepared} holds {len(manifest['domains'])} domains but params select {domain_count(params.data)} "
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


def set_up(params: Params) -> Training:
    """Threads, device and processes, the model, the data and the training's identity."""
    t, prepared = params.train, Path(params.paths.prepared)
    threads = configure_threads(t.num_threads, "train.num_threads")
    manifest, manifest_text = manifest_file.read(prepared)
    manifest_file.check_test_set(params, manifest)
    d, device = distributed.setup(t.dist_backend, resolve_device(t.device, "train.device"))
    if t.precision == "fp16" and device.type != "cuda":
        raise StageError("train.precision=fp16 needs CUDA; this run is on the CPU: use bf16 or fp32")
    set_determinism(params.seed, t.deterministic)
    torch.backends.cudnn.benchmark = t.cudnn_benchmark
    model = MODELS[params.model].build(params, device, d.rank)
    data = build_dataset(params, prepared, manifest)
    samples = sample_batch(prepared, t.crop_size, [test_dir(x) for x in model_domains(params, manifest)])
    tr = Training(params, model, data, d, device, loader_workers(t.num_workers, threads, device), 0,
                  fingerprint(params, manifest_text, d.world), manifest, samples)
    tr.steps_per_epoch = len(tr.epoch_batches())
    if tr.steps_per_epoch == 0:
        raise StageError(f"{len(data)} training items make fewer batches than the {d.world} processes; lower "
                         f"train.batch_size or train.nproc_per_node * train.nnodes")
    return tr


def samples_picture(model: GANModel, samples: tuple[torch.Tensor, ...], device: torch.device) -> np.ndarray:
    model.train(False)
    titles, rows = model.sample_rows(*(s.to(device) for s in samples))
    picture = grid(rows, titles)
    model.train()
    return picture


def send_curve(book: RunBook, tracker: Tracker) -> None:
    rows = book.unsent()
    if rows:
        tracker.log_rows(rows, "train/", skip=("step", "epoch"))
        book.sent = rows[-1]["step"]


def save_checkpoint(tr: Training, book: RunBook, tracker: Tracker) -> None:
    """Every rank takes part (its pools and random state are gathered); rank 0 writes; then the curve
    up to this checkpoint goes to MLflow."""
    if book.saved != book.step:
        ranks = distributed.gather({"model": tr.model.local_state(), "torch_rng": torch.get_rng_state()}, tr.d)
        if tr.d.main:
            checkpoint.save_resume_state(tr.params.paths.checkpoints, {
                "fingerprint": tr.fp, "model": tr.model.state_dict(), "ranks": ranks, **book.to_checkpoint()})
        book.saved = book.step
    send_curve(book, tracker)


def resume(tr: Training) -> RunBook | None:
    """The run book of this very training, its model and this rank's random state restored from the resume
    state; None when there is none (or it belongs to other params, data or code)."""
    ckpt_dir = tr.params.paths.checkpoints
    state = checkpoint.load_resume_state(ckpt_dir)
    if state is not None and state["fingerprint"] != tr.fp:
        if tr.d.main:
            log.info("ignoring the checkpoint in %s: it was made with other params, data or training code", ckpt_dir)
        return None
    if state is None:
        return None
    tr.model.load_state_dict(state["model"])
    tr.model.load_local_state(state["ranks"][tr.d.rank]["model"])
    torch.set_rng_state(state["ranks"][tr.d.rank]["torch_rng"])
    if tr.d.main:
        log.info("resuming from step %d of %d (%s)", state["step"], tr.total_steps, ckpt_dir)
    return RunBook.from_checkpoint(state)


def check_same_start(tr: Training, book: RunBook | None) -> None:
    """Every process resumes from the same step, or none does: nodes that each read a resume state of
    their own (paths.checkpoints not shared) would otherwise train different schedules and hang."""
    starts = distributed.gather(book.step if book else 0, tr.d)
    if len(set(starts)) > 1:
        raise StageError(f"the {tr.d.world} processes would start from different steps ({starts}, by rank): each node "
                         f"reads its own {tr.params.paths.checkpoints}; put it on storage every node shares, or delete it "
                         f"on every node to start over")


def open_run(tr: Training, book: RunBook, resumed: bool) -> Tracker | NoTracker:
    """Rank 0's MLflow run: a resumed training reopens its own; the book learns what the run already holds
    (after a crash between a checkpoint and its curve reaching MLflow, or while a tracking server was down,
    the rows it lacks are re-sent). A server that stops answering mid-training does not stop it: the tracker
    keeps what it cannot deliver and sends it when the server is back (tracker.Tracker)."""
    if not tr.d.main:
        return NoTracker()
    p, exp_name = tr.params, os.environ.get("DVC_EXP_NAME")
    tracker = Tracker.for_training(tracking_uri(p.mlflow.tracking_uri), p.mlflow.experiment, tr.fp, resume=resumed,
                                   run_name=exp_name or f"{p.model}-{p.data.dataset}", tags=run_tags(p, exp_name),
                                   outboxes=Path(p.paths.checkpoints) / OUTBOX, wait_s=60 * p.mlflow.server_wait_minutes)
    if resumed:
        book.sent = tracker.last_step("train/lr")
        book.seconds = tracker.last_value("train/seconds") or 0.0
    return tracker


def run_epoch(tr: Training, book: RunBook, tracker: Tracker, bar: tqdm) -> None:
    """The steps left in the current epoch, a checkpoint every train.checkpoint_every, then its sample grid."""
    t = tr.params.train
    epoch, first = divmod(book.step, tr.steps_per_epoch)
    lr = tr.model.set_lr_factor(lr_factor(epoch, t.n_epochs, t.n_epochs_decay, t.lr_policy))
    tr.data.set_epoch(epoch)
    loader = DataLoader(tr.data, batch_sampler=tr.epoch_batches(first), num_workers=tr.workers,
                        pin_memory=tr.device.type == "cuda")
    tick = time.perf_counter()
    for batch in loader:
        losses = distributed.mean_over_ranks(tr.model.train_step(batch), tr.d)
        check_finite(losses, book.step + 1, tr.params.paths.checkpoints)
        row = book.record(losses, epoch, lr, t.log_every, tr.total_steps)
        book.seconds += time.perf_counter() - tick
        tick = time.perf_counter()
        bar.update(1)
        if row:
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("G", "D_A", "D_B", "D") if k in row})
        if book.step % t.checkpoint_every == 0:
            save_checkpoint(tr, book, tracker)
    if tr.d.main:
        log_picture(tracker, samples_picture(tr.model, tr.samples, tr.device), f"samples/epoch_{epoch + 1:03d}.png")
    book.seconds += time.perf_counter() - tick


def train(params: Params, *, progress: bool = True) -> dict:
    """Run (or resume) one training: set up, resume, the epochs, then the model file and reports."""
    tr = set_up(params)
    book = resume(tr)
    check_same_start(tr, book)
    resumed = book is not None
    book = book or RunBook()
    t, d = params.train, tr.d
    # after the weights are restored: compiled modules and DDP wrappers are made around them
    tr.model.configure(precision=t.precision, channels_last=t.channels_last, compile=t.compile, distributed=d.active,
                       ddp_device_ids=[tr.device.index] if d.active and tr.device.type == "cuda" else None)
    tracker = open_run(tr, book, resumed)
    bar = tqdm(total=tr.total_steps, initial=book.step, desc=f"train {params.model}", unit="step",
               disable=not (progress and tr.d.main))
    try:
        if not resumed:
            save_checkpoint(tr, book, tracker)  # step 0: a restart resumes this training and its MLflow run
        tracker.log_params(logged_params(params))  # only what the run lacks: a crash may have cut it short
        tr.model.train()
        while book.step < tr.total_steps:
            run_epoch(tr, book, tracker, bar)
        save_checkpoint(tr, book, tracker)
        return finish(tr, book, tracker)
    except BaseException:
        # an error (not a kill): the curve up to the failure helps diagnose it; a resume skips what was sent
        with contextlib.suppress(Exception):
            send_curve(book, tracker)
        with contextlib.suppress(Exception):
            tracker.finish("FAILED")
        raise
    finally:
        bar.close()
        distributed.teardown(tr.d)


def finish(tr: Training, book: RunBook, tracker: Tracker) -> dict:
    """Check that every process holds the same weights, then rank 0 exports and closes the run."""
    d = tr.d
    digests = distributed.gather(distributed.weights_digest(n.module for n in tr.model.nets.values()), d)
    if len(set(digests)) > 1:
        raise StageError(f"the {d.world} processes ended with different weights ({digests}): their gradient "
                         f"synchronisation failed; nothing was exported")
    if not d.main:
        return {"steps": book.step, "model": tr.params.paths.model, "mlflow_run_id": None}
    sync = {"world_size": d.world, "backend": d.backend, "weights_sha256": digests} if d.active else None
    result = export(tr, book, tracker, sync)
    tracker.finish()
    return result


def log_picture(tracker: Tracker, image: np.ndarray, artifact: str) -> None:
    """Log a picture to the MLflow run under `artifact` (a relative path with a folder)."""
    folder, name = artifact.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        save_png(Path(tmp) / name, image)
        tracker.log_artifact(Path(tmp) / name, folder)


def costs(tr: Training, book: RunBook) -> dict[str, float]:
    """What a comparison of models needs beside the metrics: parameter counts, wall-clock seconds per step
    (checkpoints and sample grids included) and this process's peak memory (runtime.peak_memory: its kind
    is in the key). MLflow only: the seconds and the memory depend on the machine."""
    model = tr.model
    count = lambda names: sum(p.numel() for k in names for p in model.nets[k].module.parameters())  # noqa: E731
    peak, kind = peak_memory(tr.device)
    return {"model/parameters": count(model.nets), "model/generator_parameters": count(model.generators),
            "train/seconds_per_step": book.seconds / max(book.step, 1), f"train/peak_{kind}_mb": peak / 2**20}


def export(tr: Training, book: RunBook, tracker: Tracker, sync: dict | None) -> dict:
    """Write the model file, the loss curves and the sample grid, and attach them to the MLflow run."""
    params, paths, model = tr.params, tr.params.paths, tr.model
    pair, domains = model_pair(params, tr.manifest), tr.manifest["domains"]
    steps = book.history[-1]["step"] if book.history else 0
    model_file.save(paths.model, model_file.state(params, model, tr.fp, steps, sync,
                                                  domains, pair))
    with atomic_dir(paths.train_reports) as tmp:
        (tmp / "losses.csv").write_text(history_csv(book.history))
        save_png(tmp / "samples.png", samples_picture(model, tr.samples, tr.device))
    reports = Path(paths.train_reports)
    tracker.log_metrics(costs(tr, book))
    tracker.log_artifact(reports / "losses.csv")
    tracker.log_artifact(reports / "samples.png")
    if params.mlflow.log_model:
        tracker.log_artifact(paths.model, "checkpoint")
        tracker.deliver_all()  # the models go straight to the server: it must answer
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
