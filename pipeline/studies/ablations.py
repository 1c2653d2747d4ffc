"""The paper's ablation study as queued DVC experiments, one command:

    python -m pipeline.studies.ablations --seeds 0 1 2 --jobs 1            # queue, run, report
    python -m pipeline.studies.ablations --only full gan_alone --queue-only  # just queue them
    python -m pipeline.studies.ablations --study multimodal                 # pix2pix vs pix2pix+noise vs BicycleGAN

Each ablation is a plain set of `-S` overrides (ABLATIONS, printed as it is queued): nothing is
hidden in code, and any of them can be run by hand with `dvc exp run -S ...`. Experiments are
named `<ablation>-s<seed>`; the report groups them over seeds (mean and spread).

Zhu et al. 2017, Sec. 5.1.3, Tables 4-5 (Cityscapes labels <-> photos): cycle alone, GAN alone,
GAN + forward cycle, GAN + backward cycle, full CycleGAN; plus the identity loss (Sec. 5.2) and the
image pool (Sec. 4) switched off.

The `multimodal` study (Zhu et al. 2017b, Sec. 5): pix2pix, the pix2pix+noise baseline and
BicycleGAN on the same paired data, compared on realism (FID/KID), diversity (LPIPS and pixel
distance between samples) and the paired metrics.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.cli import fail, run_stage
from pipeline.config import load_params
from pipeline.runtime import CONCURRENCY_ENV
from pipeline.tracking import create_store, tracking_uri

ABLATIONS: dict[str, dict[str, object]] = {
    "full": {},
    "gan_alone": {"lambda_cycle": 0},
    "cycle_alone": {"cyclegan.adversarial": False},
    "gan_forward_cycle": {"cyclegan.cycle_backward": False},
    "gan_backward_cycle": {"cyclegan.cycle_forward": False},
    "no_identity": {"lambda_identity": 0},
    "no_pool": {"pool_size": 0},
}


MULTIMODAL: dict[str, dict[str, object]] = {
    "pix2pix": {"model": "pix2pix"},
    "pix2pix_noise": {"model": "bicyclegan", "bicyclegan.variant": "pix2pix_noise"},
    "bicyclegan": {"model": "bicyclegan"},
}

STUDIES: dict[str, dict[str, dict[str, object]]] = {"ablation": ABLATIONS, "multimodal": MULTIMODAL}


def yaml_value(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def exp_commands(names: list[str], seeds: list[int], extra: list[str], study: str = "ablation") -> list[list[str]]:
    """The `dvc exp run --queue` command of every (configuration of the study, seed)."""
    cmds = []
    for name in names:
        for seed in seeds:
            labels = [f"mlflow.study={study}", f"mlflow.config={name}"]  # the run's tags: Group by config in MLflow
            sets = [f"{k}={yaml_value(v)}" for k, v in STUDIES[study][name].items()] + [f"seed={seed}"] + labels + extra
            cmds.append(["dvc", "exp", "run", "--queue", "-n", f"{name}-s{seed}", *[a for s in sets for a in ("-S", s)]])
    return cmds


def init_tracking(params_file: str = "params.yaml") -> str:
    """Create the MLflow store and experiment once, before parallel workers race to do it
    (concurrent first-time creation of a sqlite store crashes)."""
    params = load_params(params_file)
    uri = tracking_uri(params.mlflow.tracking_uri)
    create_store(uri, params.mlflow.experiment)
    return uri


def queue_busy(cwd: str | None = None) -> bool:
    out = subprocess.run(["dvc", "queue", "status"], capture_output=True, text=True, cwd=cwd).stdout
    return any(word in out for word in ("Queued", "Running"))


def start_queue(jobs: int, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> str:
    """`dvc queue start -j N`; returns what it printed. Its output goes through a file, not a pipe: DVC
    leaves a daemonised copy of the command behind (the workers' parent) holding the caller's stdout,
    and a caller reading a pipe (`| tee`, subprocess capture) would wait for that daemon, which a
    worker that hangs in shutdown can keep alive for good."""
    cmd = ["dvc", "queue", "start", "-j", str(jobs)]
    with tempfile.TemporaryFile() as out:
        r = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.seek(0)
        printed = out.read().decode(errors="replace")
    if r.returncode != 0:
        fail(f"`{' '.join(cmd)}` failed (exit {r.returncode}): {printed.strip()[-2000:]}")
    return printed


def run_checked(cmd: list[str], env: dict[str, str] | None = None) -> None:
    """Run a dvc command; a failure ends the study with one line naming the command."""
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0:
        fail(f"`{' '.join(cmd)}` failed (exit {r.returncode}); its output is above. Fix what it says and re-run")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.studies.ablations", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", choices=list(STUDIES), default="ablation")
    ap.add_argument("--only", nargs="+", choices=[n for study in STUDIES.values() for n in study],
                    help="configurations of the study to run (default: all of it)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra overrides for every experiment, e.g. train.n_epochs=2")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="parallel queue workers (dvc queue start -j)")
    ap.add_argument("--queue-only", action="store_true", help="queue the experiments and stop")
    args = ap.parse_args(argv)
    names = args.only or list(STUDIES[args.study])
    unknown = [n for n in names if n not in STUDIES[args.study]]
    if unknown:
        ap.error(f"{', '.join(unknown)} not in study {args.study}: {', '.join(STUDIES[args.study])}")

    uri = run_stage(init_tracking)
    print(f"MLflow store: {uri}")
    cmds = exp_commands(names, args.seeds, args.set, args.study)
    for cmd in cmds:
        print("$", " ".join(cmd), flush=True)
        run_checked(cmd)
    if args.queue_only:
        print(f"queued; run them with: dvc queue start -j {args.jobs}; "
              f"then: python -m pipeline.studies.report --study {args.study}")
        return
    # each worker's stages take cores // workers threads (pipeline/runtime.py); the workers inherit this
    workers = min(args.jobs, len(cmds))
    print(f"$ {CONCURRENCY_ENV}={workers} dvc queue start -j {args.jobs}", flush=True)
    print(start_queue(args.jobs, env={**os.environ, CONCURRENCY_ENV: str(workers)}), end="", flush=True)
    while queue_busy():
        time.sleep(10)
    subprocess.run(["dvc", "queue", "status"])
    from pipeline.studies import report

    report.main(["--study", args.study])


if __name__ == "__main__":
    sys.exit(main())
