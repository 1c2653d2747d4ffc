"""Stage `train`: data/prepared -> the final checkpoint (paths.model), loss curves and sample grids
(paths.train_reports), and one MLflow run.

Resumable: a checkpoint is written every `train.checkpoint_every` steps to paths.checkpoints (kept
across runs by DVC's `persist: true`); a re-run with the same params and data continues from it and
ends with the same weights as an uninterrupted run. A checkpoint made with other params, data or
training code is ignored (its fingerprint differs), so an experiment never resumes another one's state.
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
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline import checkpoint, distributed
from pipeline.config import PAIRED_MODELS, Params, flatten, to_dict
from pipeline.data.datasets import AlignedDataset, UnalignedDataset, batches, grid, list_images, load_tensor
from pipeline.io import atomic_dir, save_png
from pipeline.models.gan import MODEL_BUILDERS, GANModel
from pipeline.stages.common import StageError, run_stage, stage_main
from pipeline.tracking import Tracker, git_rev, tracking_uri

log = logging.getLogger("pipeline")
SAMPLES = 4  # test images per direction in the sample grids

# Params that change how a run is executed or reported but not what it computes: a checkpoint made
# under other values of these may be resumed.
EXECUTION_ONLY = {"translate", "mlflow", "paths", "train.checkpoint_every", "train.log_every",
                  "train.num_workers", "train.device", "train.rdzv_endpoint", "train.dist_backend"}


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Learning-rate multiplier during 0-based `epoch` (the authors' 'linear' policy): 1 for the
    first n_epochs, then falling linearly by 1/(n_epochs_decay + 1) per epoch towards 0."""
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)


# The code that decides what a training computes: a checkpoint made by other code is not resumed.
TRAINING_CODE = ("models", "stages/train.py", "data/datasets.py", "distributed.py")


def code_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    files = sorted(f for rel in TRAINING_CODE for f in ([root / rel] if (root / rel).is_file() else (root / rel).rglob("*.py")))
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def fingerprint(params: Params, manifest_text: str, world: int = 1) -> str:
    """Identity of a training: params (less execution-only ones), data manifest, training code, and
    the number of processes (it decides the shards)."""
    relevant = {k: v for k, v in flatten(to_dict(params)).items()
                if k not in EXECUTION_ONLY and k.split(".")[0] not in EXECUTION_ONLY}
    blob = json.dumps({"params": relevant, "data": hashlib.sha256(manifest_text.encode()).hexdigest(),
                       "code": code_digest(), "world": world}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise StageError("train.device=cuda but no CUDA device is visible; use auto or cpu")
    return torch.device(name)


def set_determinism(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS for determinism
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def read_manifest(prepared: Path) -> tuple[dict, str]:
    path = prepared / "manifest.json"
    if not path.exists():
        raise StageError(f"{path} missing; run the prepare stage first (dvc repro prepare)")
    text = path.read_text()
    return json.loads(text), text


def check_data(params: Params, manifest: dict) -> None:
    """Params rules that need the prepared data (the test-set size), checked before any work."""
    counts = manifest["counts"]
    params.check_test_set_size(min(counts.get("testA", 0), counts.get("testB", 0)))


def build_dataset(params: Params, prepared: Path, manifest: dict):
    t = params.train
    if params.model in PAIRED_MODELS:
        pairs = manifest["pairs"]["train"]
        if not pairs:
            raise StageError(f"model={params.model} needs paired training data, but {manifest['dataset']} has none")
        return AlignedDataset(prepared / pairs[0], prepared / pairs[1], crop=t.crop_size, flip=t.flip, seed=params.seed)
    return UnalignedDataset(prepared / "trainA", prepared / "trainB", crop=t.crop_size, flip=t.flip, seed=params.seed)


def sample_batch(prepared: Path, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first test images of each domain, centre-cropped to the training size (fixed across runs)."""
    def load(sub: str) -> torch.Tensor:
        xs = [load_tensor(p) for p in list_images(prepared / sub)[:SAMPLES]]
        x = torch.stack(xs)
        o = (x.shape[-1] - crop) // 2
        return x[..., o:o + crop, o:o + crop]
    return load("testA"), load("testB")


def write_history_csv(history: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    path.write_text(buf.getvalue())


def check_finite(losses: dict[str, float], step: int, ckpt_dir: Path) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise StageError(f"non-finite loss at step {step}: {bad}; training stopped, the last good checkpoint in "
                         f"{ckpt_dir} is kept. Lower train.lr, or check the data")


class NoTracker:
    """What ranks other than 0 use in place of a Tracker: they log nothing."""

    run_id = uri = None

    def last_step(self, key: str) -> int:
        return -1

    def metric_keys(self) -> set[str]:
        return set()

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def start_tracking(params: Params, run_id: str | None) -> Tracker:
    exp_name = os.environ.get("DVC_EXP_NAME")
    tags = {"dvc.exp_name": exp_name or "", "git.rev": git_rev(), "pipeline.model": params.model,
            "pipeline.dataset": params.data.dataset, "pipeline.stage": "train"}
    return Tracker(tracking_uri(params.mlflow.tracking_uri), params.mlflow.experiment, run_id=run_id,
                   run_name=exp_name or f"{params.model}-{params.data.dataset}", tags=tags)


def train(params: Params, *, progress: bool = True, stop_at_step: int | None = None) -> dict:
    """Run (or resume) one training. `stop_at_step` simulates a crash for tests: it returns
    abruptly after that many steps of this call without writing anything more."""
    t, paths = params.train, params.paths
    prepared, ckpt_dir = Path(paths.prepared), Path(paths.checkpoints)
    manifest, manifest_text = read_manifest(prepared)
    check_data(params, manifest)
    d, device = distributed.setup(t.dist_backend, resolve_device(t.device))
    if t.precision == "fp16" and device.type != "cuda":
        raise StageError("train.precision=fp16 needs CUDA; this run is on the CPU: use bf16 or fp32")
    set_determinism(params.seed, t.deterministic)
    torch.backends.cudnn.benchmark = t.cudnn_benchmark

    model: GANModel = MODEL_BUILDERS[params.model](params, device, rank=d.rank)
    data = build_dataset(params, prepared, manifest)
    epochs = t.n_epochs + t.n_epochs_decay
    steps_per_epoch = len(distributed.shard(batches(len(data), t.batch_size), d))
    if steps_per_epoch == 0:
        raise StageError(f"{len(data)} training items make fewer batches than the {d.world} processes; lower "
                         f"train.batch_size or train.nproc_per_node * train.nnodes")
    total_steps = epochs * steps_per_epoch
    fp = fingerprint(params, manifest_text, d.world)

    # --- resume, if a checkpoint of this very experiment exists ---------------------------------
    state = checkpoint.load_resume_state(ckpt_dir)
    if state is not None and state["fingerprint"] != fp:
        if d.main:
            log.info("ignoring the checkpoint in %s: it was made with other params, data or training code", ckpt_dir)
        state = None
    step, history, window, run_id = 0, [], [], None  # window: losses of steps not yet logged
    if state is not None:
        model.load_state_dict(state["model"])
        local = state["ranks"][d.rank]
        model.load_local_state(local["model"])
        torch.set_rng_state(local["torch_rng"])
        step, history, window, run_id = state["step"], state["history"], state["window"], state["mlflow_run_id"]
        if d.main:
            log.info("resuming from step %d of %d (%s)", step, total_steps, ckpt_dir)
    model.configure(precision=t.precision, channels_last=t.channels_last, compile=t.compile, distributed=d.active,
                    ddp_device_ids=[device.index] if d.active and device.type == "cuda" else None)
    tracker = start_tracking(params, run_id) if d.main else NoTracker()
    # The loss curve reaches MLflow when a checkpoint holding it is written, so a crash never leaves
    # points in the run that the resumed training would log again. After a crash between the two,
    # the rows MLflow lacks are the checkpoint's rows past the last step it holds.
    sent = tracker.last_step("train/lr") if state is not None else -1
    saved_step = step if state is not None else -1

    def send_curve() -> None:
        nonlocal sent
        rows = [row for row in history if row["step"] > sent]
        if rows:
            tracker.log_rows(rows, "train/", skip=("step", "epoch"))
            sent = rows[-1]["step"]

    def save_checkpoint() -> None:
        nonlocal saved_step
        if saved_step != step:
            # every rank takes part (its pools and random state are gathered); rank 0 writes
            ranks = distributed.gather({"model": model.local_state(), "torch_rng": torch.get_rng_state()}, d)
            if d.main:
                checkpoint.save_resume_state(ckpt_dir, {
                    "fingerprint": fp, "step": step, "model": model.state_dict(), "ranks": ranks,
                    "history": history, "window": window, "mlflow_run_id": tracker.run_id})
            saved_step = step
        send_curve()

    samples = sample_batch(prepared, t.crop_size)

    def sample_grid() -> np.ndarray:
        model.train(False)
        picture = grid(model.sample_rows(samples[0].to(device), samples[1].to(device)))
        model.train()
        return picture
    bar = tqdm(total=total_steps, initial=step, desc=f"train {params.model}", unit="step", disable=not (progress and d.main))
    steps_this_call = 0
    try:
        if state is None:
            save_checkpoint()  # step 0: from now on a restart reopens this MLflow run instead of orphaning it
        tracker.log_params(flatten(to_dict(params)))  # only what the run lacks: a crash may have cut it short
        model.train()
        while step < total_steps:
            epoch, first = divmod(step, steps_per_epoch)
            lr = t.lr * lr_factor(epoch, t.n_epochs, t.n_epochs_decay)
            model.set_lr(lr)
            data.set_epoch(epoch)
            loader = DataLoader(data, batch_sampler=distributed.shard(batches(len(data), t.batch_size), d)[first:],
                                num_workers=t.num_workers, pin_memory=device.type == "cuda")
            for batch in loader:
                losses = distributed.mean_over_ranks(model.train_step(batch), d)
                check_finite(losses, step + 1, ckpt_dir)
                step += 1
                steps_this_call += 1
                window.append(losses)
                bar.update(1)
                if step % t.log_every == 0 or step == total_steps:
                    row = {"step": step, "epoch": epoch + 1, "lr": lr,
                           **{k: float(np.mean([w[k] for w in window])) for k in window[0]}}
                    history.append(row)
                    bar.set_postfix({k: f"{row[k]:.3f}" for k in ("G", "D_A", "D_B", "D") if k in row})
                    window.clear()
                if stop_at_step is not None and steps_this_call >= stop_at_step:
                    return {"stopped_at": step}
                if step % t.checkpoint_every == 0:
                    save_checkpoint()
            if d.main:
                with_tmp_png(tracker, sample_grid(), f"samples/epoch_{epoch + 1:03d}.png")
        save_checkpoint()
        digests = distributed.gather(distributed.weights_digest(n.module for n in model.nets.values()), d)
        if len(set(digests)) > 1:
            raise StageError(f"the {d.world} processes ended with different weights ({digests}): their gradient "
                             f"synchronisation failed; nothing was exported")
        result = {"steps": step, "model": paths.model, "mlflow_run_id": None}
        if d.main:
            sync = {"world_size": d.world, "backend": d.backend, "weights_sha256": digests} if d.active else None
            result = export(params, model, history, sample_grid(), fp, tracker, sync)
            tracker.finish()
        return result
    except BaseException:
        # an error (not a kill): the curve up to the failure helps diagnose it; a resume skips what was sent
        with contextlib.suppress(Exception):
            send_curve()
        with contextlib.suppress(Exception):
            tracker.finish("FAILED")
        raise
    finally:
        bar.close()
        distributed.teardown(d)


def with_tmp_png(tracker: Tracker, image: np.ndarray, artifact: str) -> None:
    """Log a picture to the MLflow run under `artifact` (a relative path with a folder)."""
    import tempfile

    folder, name = artifact.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        save_png(Path(tmp) / name, image)
        tracker.log_artifact(Path(tmp) / name, folder)


def final_checkpoint(params: Params, model: GANModel, fp: str, run_id: str | None, uri: str | None, steps: int,
                     sync: dict | None = None) -> dict:
    """What later stages need, and nothing else: each generator's constructor spec and weights,
    the resolved config, and the MLflow run to report into."""
    return {
        "model": params.model,
        "nets": {k: {"spec": model.nets[k].spec, "state_dict": model.nets[k].module.state_dict()}
                 for k in model.generators},
        "config": to_dict(params),
        "fingerprint": fp,
        "mlflow_run_id": run_id,
        "mlflow_tracking_uri": uri,
        "steps": steps,
        "distributed": sync,  # world size, backend and every rank's weight hash (all equal) under torchrun
    }


def export(params: Params, model: GANModel, history: list[dict], samples: np.ndarray, fp: str,
           tracker: Tracker, sync: dict | None = None) -> dict:
    """Write the final checkpoint (generators + constructor specs + resolved config), the loss
    curves and the sample grid, and attach them to the MLflow run."""
    paths = params.paths
    final = final_checkpoint(params, model, fp, tracker.run_id, tracker.uri, history[-1]["step"] if history else 0, sync)
    checkpoint.save(paths.model, final)
    with atomic_dir(paths.train_reports) as tmp:
        write_history_csv(history, tmp / "losses.csv")
        save_png(tmp / "samples.png", samples)
    reports = Path(paths.train_reports)
    tracker.log_artifact(reports / "losses.csv")
    tracker.log_artifact(reports / "samples.png")
    if params.mlflow.log_model:
        tracker.log_artifact(paths.model, "checkpoint")
    held = tracker.metric_keys()  # a rerun after a crash inside export logs nothing twice
    final_losses = {f"final/{k}": v for k, v in history[-1].items()
                    if k not in ("step", "epoch", "lr") and f"final/{k}" not in held} if history else {}
    tracker.log_metrics(final_losses, final["steps"])
    return {"model": paths.model, "mlflow_run_id": tracker.run_id, "steps": final["steps"]}


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main("train", argv)
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


if __name__ == "__main__":
    main()
