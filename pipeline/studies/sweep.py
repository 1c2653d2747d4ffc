"""Wall time of a sweep of queued DVC experiments, one worker against several (not a test):

    python -m pipeline.studies.sweep                     # 4 ablations, -j 1 and -j 2, 3 repeats
    python -m pipeline.studies.sweep --repeats 1 --jobs 1 2 --contrast-repeats 0

The sweep is the ablation command's queue (`python -m pipeline.studies.ablations --queue-only`) of
--configs at one seed, each experiment trained for --set's shortened schedule, run by a plain
`dvc queue start -j N` (no environment variable: the stages find the running workers themselves,
pipeline/runtime.py) and timed from the start of the queue until it is empty. Per repeat the modes
run in turn (-j 1, -j 2, ...), so a slow minute of a shared machine hits each alike; the row is the
median over repeats. The contrast mode ("-j N, torch's default threads") queues the same experiments
with every stage's num_threads pinned to the machine's core count: what a sweep did before each
process took its share of the cores.

It runs in a scratch copy of the workspace (its tracked and untracked, not ignored files) with a DVC
cache of its own: the shared stages (download, prepare, ref_stats, segmenter) run once at set-up and
are committed, so each timed queue trains, translates and evaluates its experiments, and nothing else.
Between timed queues the experiments and DVC's run-cache are removed, so no queue restores another's
results. The user's experiments and MLflow store are never touched.

Between repeats it also measures the machine's limit for the largest -j: the embedded training step
in one process on every core against one single-thread process per core side by side (the benchmark's
concurrency measurement). The -j speedup of the sweep is reported as a fraction of that limit, taken
in the same run, because on a shared machine the limit itself moves from hour to hour.

Writes reports/benchmark/sweep-<device>.json and .md (`--name` changes the stem).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.io import write_json, write_text
from pipeline.runtime import cpu_cores
from pipeline.studies.ablations import ABLATIONS, exp_commands, exp_name, queue_busy, start_queue
from pipeline.studies.benchmark import measure_concurrency

THREADED_SECTIONS = ("train", "translate", "evaluate")  # the stages a queued ablation reruns
THREADS_LINE = re.compile(r"torch threads: (\d+) \((.*)\)")


def sh(cmd: list[str], cwd: Path) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"sweep: `{' '.join(cmd)}` failed in {cwd} (exit {r.returncode}): "
                 f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return r.stdout


def scratch_copy(workspace: Path, dest: Path) -> Path:
    """The workspace's files as git sees them (tracked, and untracked not ignored), in a new repository."""
    files = sh(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], workspace).split("\0")
    for rel in filter(None, files):
        src = workspace / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.name", "sweep"],
                ["git", "config", "user.email", "sweep@example.invalid"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "sweep baseline"]):
        sh(cmd, dest)
    return dest


def prepare_shared_stages(repo: Path) -> None:
    """Run everything the experiments share, and commit it, so the timed queues only train and evaluate."""
    sh(["dvc", "repro", "ref_stats", "segmenter"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "shared stages", "--allow-empty"], repo)  # dvc.lock may already hold them


def clean(repo: Path) -> None:
    """Forget the last queue's experiments and DVC's run-cache (which would restore their results)."""
    sh(["dvc", "exp", "remove", "-A", "-q"], repo)
    sh(["dvc", "queue", "remove", "--all"], repo)
    shutil.rmtree(repo / ".dvc" / "cache" / "runs", ignore_errors=True)


def threads_used(repo: Path, name: str) -> list[str]:
    """The `torch threads` lines a queued experiment's stages logged."""
    r = subprocess.run(["dvc", "queue", "logs", name], cwd=repo, capture_output=True, text=True)
    return [f"{m.group(1)} ({m.group(2)})" for m in THREADS_LINE.finditer(r.stdout + r.stderr)]


def timed_queue(repo: Path, configs: list[str], seed: int, extra: list[str], jobs: int) -> dict:
    clean(repo)
    cmds = exp_commands(configs, [seed], extra)
    sh([sys.executable, "-m", "pipeline.studies.ablations", "--only", *configs, "--seeds", str(seed),
        "--queue-only", "--set", *extra], repo)
    start = time.perf_counter()
    start_queue(jobs, repo)
    time.sleep(2)
    while queue_busy(str(repo)):
        time.sleep(2)
    wall = time.perf_counter() - start
    status = sh(["dvc", "queue", "status"], repo)
    failed = [line for line in status.splitlines() if "Failed" in line]
    names = [exp_name(c) for c in cmds]
    return {"wall_s": wall, "failed": failed, "threads": {n: threads_used(repo, n) for n in names}}


def machine_limit(repo: Path, cores: int) -> dict:
    """Total images/s of the embedded fp32 training step: one process on `cores` threads, then `cores`
    single-thread processes side by side; their ratio is the most a sweep of `cores` workers can gain
    on the training step here."""
    args = argparse.Namespace(device="cpu", params=repo / "params.yaml", warmup=3, steps=10, repeats=5, rounds=1)
    one, side_by_side = measure_concurrency(["embedded"], [(1, cores), (cores, 1)], args)
    if "error" in one or "error" in side_by_side:
        return {"error": (one if "error" in one else side_by_side)["error"]}
    return {"one_process": one["images_per_s"], "side_by_side": side_by_side["images_per_s"],
            "ratio": side_by_side["x_vs_first"]}


def markdown(report: dict) -> str:
    lines = [f"# Sweep benchmark: {report['device']}", "",
             f"{len(report['configs'])} queued experiments ({', '.join(report['configs'])}; seed {report['seed']}; "
             f"`{' '.join(report['set'])}`), wall time from `dvc queue start` until the queue is empty; median over "
             f"repeats (each repeat runs every mode in turn). torch {report['torch']}, {report['date']}. "
             f"Command: `{report['command']}`.", "",
             f"| mode | workers | torch threads per stage process | wall s (repeats) | median | x vs -j {report['jobs'][0]} |",
             "|---|---|---|---|---|---|"]
    base = next(iter(report["modes"].values()))["median_s"]  # the first --jobs value
    for m in report["modes"].values():
        ratio = f"{base / m['median_s']:.2f}" if base and m.get("median_s") else "-"
        threads = "; ".join(sorted({t for runs in m["threads"] for ts in runs.values() for t in ts})) or "-"
        walls = ", ".join(f"{w:.0f}" for w in m["wall_s"])
        failed = f" ({len(m['failed'])} failed)" if m["failed"] else ""
        lines.append(f"| {m['label']} | {m['jobs']} | {threads} | {walls}{failed} | {m['median_s']:.0f} | {ratio} |")
    limits = [x for x in report.get("machine_limit", []) if "error" not in x]
    if limits:
        cores, j = report["cores"], max(report["jobs"])
        limit = statistics.median(x["ratio"] for x in limits)
        fastest = report["modes"][f"j{j}"]["median_s"]
        lines += ["", f"Machine limit, measured between the repeats: the embedded training step, {cores} single-thread "
                      f"processes side by side against one process on {cores} threads, total images/s "
                      + "; ".join(f"{x['side_by_side']:.3g} vs {x['one_process']:.3g} ({x['ratio']:.2f}x)" for x in limits)
                      + f"; median **{limit:.2f}x**. The -j {j} sweep's speedup, {base / fastest:.2f}x, is "
                      f"**{base / fastest / limit:.0%}** of it."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m pipeline.studies.sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", choices=list(ABLATIONS), default=["full", "gan_alone", "cycle_alone", "no_pool"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=["train.n_epochs=1", "train.n_epochs_decay=1"], metavar="KEY=VALUE",
                    help="overrides of every experiment (default: a 2-epoch schedule)")
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2], help="queue workers to compare (the first is the base)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contrast-repeats", type=int, default=1,
                    help="repeats of the largest -j with torch's default threads in every process (0 = skip)")
    ap.add_argument("--no-machine-limit", dest="machine_limit", action="store_false",
                    help="skip the training step's side-by-side measurement between repeats")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmark"))
    ap.add_argument("--name", default="sweep", help="file name stem of the report: <name>-<device>.json/.md")
    ap.add_argument("--keep", action="store_true", help="keep the scratch repository (its path is printed)")
    return ap.parse_args(argv)


def queue_modes(args: argparse.Namespace, cores: int) -> dict[str, dict]:
    """The queue layouts compared: each -j with threads auto, and the largest -j with torch's default threads."""
    default_threads = [f"{s}.num_threads={cores}" for s in THREADED_SECTIONS]
    modes = {f"j{j}": {"label": f"-j {j}, threads auto", "jobs": j, "extra": []} for j in args.jobs}
    if args.contrast_repeats:
        j = max(args.jobs)
        modes[f"j{j}_default_threads"] = {"label": f"-j {j}, {cores} threads per process (torch's default)", "jobs": j,
                                          "extra": default_threads, "repeats": args.contrast_repeats}
    return modes


def run_modes(args: argparse.Namespace, repo: Path, modes: dict[str, dict], cores: int) -> tuple[dict, list]:
    """Every mode's queue `args.repeats` times, interleaved; (per-mode wall times and failures, the machine
    limit measured between repeats)."""
    results = {m: {**spec, "wall_s": [], "failed": [], "threads": []} for m, spec in modes.items()}
    limits = []
    for k in range(args.repeats):
        for mode, spec in modes.items():
            if k >= spec.get("repeats", args.repeats):
                continue
            r = timed_queue(repo, args.configs, args.seed, args.set + spec["extra"], spec["jobs"])
            res = results[mode]
            res["wall_s"].append(r["wall_s"])
            res["failed"] += r["failed"]
            res["threads"].append(r["threads"])
            print(f"repeat {k + 1}/{args.repeats} {spec['label']:45s} {r['wall_s']:7.1f} s"
                  + (f" FAILED: {r['failed']}" if r["failed"] else ""), flush=True)
        if args.machine_limit:
            limits.append(machine_limit(repo, cores))
            print(f"repeat {k + 1}/{args.repeats} machine limit: {limits[-1]}", flush=True)
    for res in results.values():
        res["median_s"] = statistics.median(res["wall_s"])
        del res["extra"]
    return results, limits


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="sweep-"))
    print(f"scratch repository: {scratch}", flush=True)
    repo = scratch_copy(Path.cwd(), scratch / "repo")
    prepare_shared_stages(repo)
    cores = cpu_cores()
    results, limits = run_modes(args, repo, queue_modes(args, cores), cores)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = {"device": f"{cores} CPU cores" if device == "cpu" else torch.cuda.get_device_name(),
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"), "configs": args.configs,
              "seed": args.seed, "set": args.set, "jobs": args.jobs, "repeats": args.repeats, "cores": cores,
              "machine_limit": limits,
              "command": "python -m pipeline.studies.sweep " + " ".join(argv if argv is not None else sys.argv[1:]),
              "modes": results}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{args.name}-{device}.json", report)
    write_text(args.out / f"{args.name}-{device}.md", markdown(report))
    print(markdown(report))
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    if any(res["failed"] for res in results.values()):
        sys.exit("sweep: some experiments failed (see the table); the timings of those queues are not comparable")


if __name__ == "__main__":
    main()
