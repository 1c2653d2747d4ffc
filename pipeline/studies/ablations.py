"""The paper's ablation study as queued DVC experiments, one command:

    python -m pipeline.studies.ablations --jobs 2                           # seeds 0 1 2: queue, run, report
    python -m pipeline.studies.ablations --only full gan_alone --queue-only  # just queue them
    python -m pipeline.studies.ablations --study multimodal                 # pix2pix vs pix2pix+noise vs BicycleGAN
    python -m pipeline.studies.ablations --shard 2/3 --push origin          # this machine's third of the study
    python -m pipeline.studies.ablations --study cut --seeds 0 1 2 3 4      # CycleGAN vs CUT vs FastCUT

Each ablation is a plain set of `-S` overrides (ABLATIONS, printed as it is queued): nothing is
hidden in code, and any of them can be run by hand with `dvc exp run -S ...`. A row sets every knob
that defines it, and the command refuses a params.yaml that differs from the committed one in any
other key (naming it): what a row means does not depend on the workspace. Experiments are named
`<ablation>-s<seed>`; the report groups them over seeds (mean, spread, 95% interval).

Zhu et al. 2017, Sec. 5.1.4, Tables 4-5 (Cityscapes labels <-> photos), under the paper's protocol
(PAPER_PROTOCOL: lambda 10, pool 50, no identity loss): cycle alone, GAN alone, GAN + forward cycle,
GAN + backward cycle, full CycleGAN; plus the identity loss (Sec. 5.2) switched on and the image pool
(Sec. 4) switched off, each against the same full model.

The `multimodal` study (Zhu et al. 2017b, Sec. 5): pix2pix, the pix2pix+noise baseline and
BicycleGAN on the same paired data, compared on realism (FID/KID), diversity (LPIPS and pixel
distance between samples) and the paired metrics.

The `multidomain` study (Choi et al. 2018, Sec. 4): one StarGAN for the day, dusk and fog photos of the
multi-domain world against a CycleGAN for each pair of them, the same steps per model, compared per
directed pair and on average, with parameter counts and training time.

The `cut` study (Park et al. 2020, Table 1): CycleGAN under its paper's protocol, CUT and FastCUT on the
same data and steps, scored under CUT's FID protocol (legacy_pytorch) and torch-fidelity's, with
parameter counts, seconds per step and peak memory (run it with --seeds 0 1 2 3 4).
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
from pipeline.models.cyclegan import PAPER
from pipeline.runtime import CONCURRENCY_ENV
from pipeline.tracking import create_store, tracking_uri

# Zhu et al. 2017, Tables 4-5 (Cityscapes), under the paper's protocol: lambda = 10 (Sec. 4), a pool of
# 50 (Sec. 4), and no identity loss, which the paper introduces for painting -> photo only (Sec. 5.2; the
# paper's Torch code defaulted it to 0). Every row sets every knob of this protocol, so a row means the
# same whatever params.yaml holds for them (e.g. after `dvc exp run -S lambda_cycle=5` was applied).
PAPER_PROTOCOL: dict[str, object] = {
    "model": "cyclegan", **PAPER, "lambda_identity": 0.0,
    "cyclegan.adversarial": True, "cyclegan.cycle_forward": True, "cyclegan.cycle_backward": True,
}
# What each row changes from the full model (paper name in the comment).
ABLATION_CHANGES: dict[str, dict[str, object]] = {
    "full": {},                                             # CycleGAN (ours)
    "gan_alone": {"lambda_cycle": 0.0},                     # GAN alone
    "cycle_alone": {"cyclegan.adversarial": False},         # Cycle alone
    "gan_forward_cycle": {"cyclegan.cycle_backward": False},  # GAN + forward cycle
    "gan_backward_cycle": {"cyclegan.cycle_forward": False},  # GAN + backward cycle
    "identity": {"lambda_identity": 0.5},                   # + identity loss (Sec. 5.2), against the same full model
    "no_pool": {"pool_size": 0},                            # - image pool (Sec. 4), against the same full model
}
# The study's measurement protocol, which made reports/ablation.md: 800 steps (2 + 2 epochs of the 200-image
# world), 200 test images per domain, FID/KID under torch-fidelity's resize alone.
ABLATION_PROTOCOL: dict[str, object] = {"train.n_epochs": 2, "train.n_epochs_decay": 2, "data.synthetic.n_test": 200,
                                        "evaluate.fid_protocols": "tf"}
ABLATIONS: dict[str, dict[str, object]] = {name: {**PAPER_PROTOCOL, **ABLATION_PROTOCOL, **change}
                                           for name, change in ABLATION_CHANGES.items()}


# Each model at its authors' batch size: pix2pix 1; BicycleGAN 2, split between its two cycles.
MULTIMODAL: dict[str, dict[str, object]] = {
    "pix2pix": {"model": "pix2pix", "train.batch_size": 1},
    "pix2pix_noise": {"model": "bicyclegan", "bicyclegan.variant": "pix2pix_noise", "train.batch_size": 1},
    "bicyclegan": {"model": "bicyclegan", "bicyclegan.variant": "bicyclegan", "train.batch_size": 2},
}

# Choi et al. 2018, Sec. 4 (RaFD, Table 3 and Fig. 5): one StarGAN for k domains against a two-domain model
# trained for each pair. Here the three photo domains of the multi-domain world, prepared once, so that every
# model is scored by the same reference features, segmenter and domain classifier; each model trains for the
# same 8 epochs of 200 steps: a CycleGAN epoch is max(|A|, |B|) = 200 steps over its pair, and StarGAN's batch
# of 3 makes its epoch over the 3 x 200 images 200 steps too. A StarGAN step is one D update, so its G gets
# 40 updates per epoch (n_critic 5) against CycleGAN's 200 (docs/models/stargan.md, "StarGAN against a CycleGAN per pair").
MULTI_DOMAIN_PROTOCOL: dict[str, object] = {"data.dataset": "synthetic_multi", "data.domains": "[day,dusk,fog]",
                                            "train.n_epochs": 4, "train.n_epochs_decay": 4}
MULTI_DOMAIN: dict[str, dict[str, object]] = {
    "stargan": {**MULTI_DOMAIN_PROTOCOL, "model": "stargan", "train.batch_size": 3, "train.pair": "null"},
    **{f"cyclegan_{a}_{b}": {**MULTI_DOMAIN_PROTOCOL, "model": "cyclegan", "train.batch_size": 1,
                             "train.pair": f"[{a},{b}]", **PAPER}
       for a, b in (("day", "dusk"), ("day", "fog"), ("dusk", "fog"))},
}

# Park et al. 2020 (CUT), Table 1: CycleGAN under its paper's protocol, CUT and FastCUT on the embedded
# labels -> photo world, the same steps and batch size (1, both papers'), FID/KID under pytorch-fid's resize
# (legacy_pytorch, which CUT's paper reports) and torch-fidelity's. A cut row pins the mode's null knobs, so
# that a workspace that sets one cannot change what the row means.
CUT_PROTOCOL: dict[str, object] = {"train.batch_size": 1, "evaluate.fid_protocols": "tf+legacy_pytorch"}
CUT_MODE_KNOBS = {"cut.lambda_nce": "null", "cut.nce_idt": "null", "cut.flip_equivariance": "null"}
CUT_STUDY: dict[str, dict[str, object]] = {
    "cyclegan": {**CUT_PROTOCOL, **PAPER_PROTOCOL},
    "cut": {**CUT_PROTOCOL, "model": "cut", "cut.mode": "cut", **CUT_MODE_KNOBS},
    "fastcut": {**CUT_PROTOCOL, "model": "cut", "cut.mode": "fastcut", **CUT_MODE_KNOBS},
}

STUDIES: dict[str, dict[str, dict[str, object]]] = {"ablation": ABLATIONS, "multimodal": MULTIMODAL,
                                                    "multidomain": MULTI_DOMAIN, "cut": CUT_STUDY}
DEFAULT_SEEDS = [0, 1, 2]  # three seeds: the fewest with which a 95% interval of the mean means something


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` (1 <= i <= n) -> (i, n); anything else: one line naming --shard."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 1 <= int(parts[0]) <= int(parts[1]):
        fail(f"--shard {text}: expected i/n with 1 <= i <= n, e.g. --shard 1/2 on one machine and --shard 2/2 on another")
    return int(parts[0]), int(parts[1])


def share(cmds: list[list[str]], shard: tuple[int, int]) -> list[list[str]]:
    """Machine i of n runs every n-th experiment from the i-th: the shares are disjoint, cover the study,
    and differ in size by one at most, whichever order the configurations and seeds come in."""
    i, n = shard
    return cmds[i - 1::n]


def yaml_value(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def exp_commands(names: list[str], seeds: list[int], extra: list[str], study: str = "ablation") -> list[list[str]]:
    """The `dvc exp run --queue` command of every (configuration of the study, seed), seed by seed: a queue
    run in order times every configuration across the whole run (a machine that slows down later slows
    them all alike), and a study cut short holds every configuration at its first seeds."""
    cmds = []
    for seed in seeds:
        for name in names:
            labels = [f"mlflow.study={study}", f"mlflow.config={name}"]  # the run's tags: Group by config in MLflow
            sets = [f"{k}={yaml_value(v)}" for k, v in STUDIES[study][name].items()] + [f"seed={seed}"] + labels + extra
            cmds.append(["dvc", "exp", "run", "--queue", "-n", f"{name}-s{seed}", *[a for s in sets for a in ("-S", s)]])
    return cmds


def exp_name(cmd: list[str]) -> str:
    """The experiment name (`-n`) of a queued `dvc exp run` command of exp_commands."""
    return cmd[cmd.index("-n") + 1]


def committed_params(cwd: str | None = None) -> dict | None:
    """params.yaml as committed (HEAD), flattened; None outside a git repository or before a commit."""
    import yaml

    from pipeline.config import flatten

    r = subprocess.run(["git", "show", "HEAD:params.yaml"], capture_output=True, text=True, cwd=cwd)
    return flatten(yaml.safe_load(r.stdout)) if r.returncode == 0 else None


def workspace_drift(study: str, extra: list[str], params_file: str = "params.yaml", cwd: str | None = None) -> list[str]:
    """'key (workspace vs committed)' for every param that params.yaml changes from HEAD's and that
    neither the study's rows nor --set pin: the study's experiments would silently inherit it."""
    import yaml

    from pipeline.config import flatten

    committed = committed_params(cwd)
    if committed is None:
        return []
    workspace = flatten(yaml.safe_load((Path(cwd or ".") / params_file).read_text()))
    pinned = {k for row in STUDIES[study].values() for k in row} | {s.split("=", 1)[0] for s in extra} | {"seed"}
    return [f"{k} ({workspace.get(k)!r} vs {committed.get(k)!r})" for k in sorted(set(workspace) | set(committed))
            if k not in pinned and not k.startswith("mlflow.") and workspace.get(k) != committed.get(k)]


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
    ap.add_argument("--seeds", nargs="+", type=int, default=DEFAULT_SEEDS)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra overrides for every experiment, e.g. train.n_epochs=2")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="parallel queue workers (dvc queue start -j)")
    ap.add_argument("--queue-only", action="store_true", help="queue the experiments and stop")
    ap.add_argument("--shard", default="1/1", metavar="I/N",
                    help="run the I-th of N shares of the experiments (one per machine, against a shared MLflow server; "
                         "docs/team.md); the report gathers every share from the server")
    ap.add_argument("--push", metavar="GIT_REMOTE",
                    help="after the queue: `dvc exp push GIT_REMOTE` each experiment of this share (its data to the "
                         "default DVC remote), so that the team can pull, apply and use it")
    args = ap.parse_args(argv)
    names = args.only or list(STUDIES[args.study])
    unknown = [n for n in names if n not in STUDIES[args.study]]
    if unknown:
        ap.error(f"{', '.join(unknown)} not in study {args.study}: {', '.join(STUDIES[args.study])}")

    drift = workspace_drift(args.study, args.set)
    if drift:
        fail(f"params.yaml differs from the committed one in {', '.join(drift)}; every experiment of the study would "
             f"inherit that. Restore it (`git checkout params.yaml`, e.g. after `dvc exp run` applied an experiment) "
             f"or pass the change to every row explicitly with --set KEY=VALUE")
    uri = run_stage(init_tracking)
    print(f"MLflow store: {uri}")
    cmds = share(exp_commands(names, args.seeds, args.set, args.study), parse_shard(args.shard))
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
    if args.push:
        run_checked(["dvc", "exp", "push", args.push, *map(exp_name, cmds)])
    from pipeline.studies import report

    report.main(["--study", args.study])


if __name__ == "__main__":
    sys.exit(main())
