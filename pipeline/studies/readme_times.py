"""How long the README's commands take a newcomer on this machine, each from a fresh clone of HEAD:

    python -m pipeline.studies.readme_times     # -> reports/benchmark/readme-times-cpu.json and .md

The commands are read from the README's marked blocks, so what is timed is what the README shows. Each runs once
with bash, in the order a newcomer runs them: the main job (venv, install, `dvc repro`) in a fresh clone, the
README's experiment in that clone, the ablation study's first two experiments under its declared protocol there
too, and the test command in a second fresh clone. One run each: a newcomer's wall clock, install included, on an otherwise
idle machine; a benchmark of the code is reports/benchmark/stages-cpu.md. The whole study's time is estimated
from its first two experiments (the first prepares the study's data, which DVC then reuses): the first, then the
second's time for each further one. Two queue workers share the same two cores one foreground experiment uses, so
the estimate stands for `--jobs 2` too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline.studies.ablations import ABLATIONS, DEFAULT_SEEDS, exp_commands
from pipeline.studies.throughput import cpu_model
from pipeline.tools.docs import REPO, readme_commands

ACTIVATE = ". .venv/bin/activate && "


def timed(command: str, cwd: Path) -> float:
    """Seconds `command` took under bash in `cwd`; a failure ends the measurement naming the command."""
    tick = time.perf_counter()
    r = subprocess.run(["bash", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"error: `{command}` failed in {cwd} (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.perf_counter() - tick


def fresh_clone(root: Path, name: str) -> Path:
    subprocess.run(["git", "clone", "-q", str(REPO), str(root / name)], check=True)
    return root / name


def measure(root: Path) -> list[dict]:
    commands = readme_commands()
    main_job, test_job, experiment = commands["main job"], commands["tests"], commands["experiment"]
    # the study's first two experiments, run in the foreground: the first also prepares the study's data (its
    # protocol's test set), the second shows what each further one costs
    first_two = [" ".join(a for a in cmd if a != "--queue") for cmd in exp_commands(list(ABLATIONS)[:2], DEFAULT_SEEDS[:1], [])]
    clone = fresh_clone(root, "main")
    rows = [{"what": "main job", "command": main_job, "seconds": timed(main_job, clone)},
            {"what": "experiment", "command": experiment, "seconds": timed(ACTIVATE + experiment, clone)}]
    study = [timed(ACTIVATE + cmd, clone) for cmd in first_two]
    count = len(ABLATIONS) * len(DEFAULT_SEEDS)
    rows.append({"what": "ablation study (estimate)", "command": "python -m pipeline.studies.ablations --jobs 2",
                 "seconds": study[0] + (count - 1) * study[1],
                 "estimate": f"{count} experiments: its first two measured, {study[0] / 60:.0f} and {study[1] / 60:.0f} "
                             f"min, then {count - 2} more like the second"})
    rows.append({"what": "tests", "command": test_job, "seconds": timed(test_job, fresh_clone(root, "tests"))})
    return rows


def markdown(report: dict) -> str:
    lines = ["# The README's commands, timed", "",
             f"Each once on {report['machine']}, from a fresh clone of commit {report['commit']}, the machine otherwise "
             f"idle (`python -m pipeline.studies.readme_times`).", "",
             "| what | command | minutes |", "|---|---|---|"]
    for r in report["rows"]:
        note = f" ({r['estimate']})" if "estimate" in r else ""
        lines.append(f"| {r['what']} | `{r['command']}` | {r['seconds'] / 60:.0f}{note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.studies.readme_times", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmark")
    ap.add_argument("--keep", type=Path, help="clone into this folder and keep the clones (default: a temporary one)")
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        rows = measure(root)
    report = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "commit": commit, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "readme-times-cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "readme-times-cpu.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
