"""How far the default run's numbers move when only the float order changes (another CPU's kernels, another
thread count), against the committed run:

    python -m pipeline.studies.spread --other 6dc93c5 "a CPU without AVX-512, 2 threads" --other <exp commit> "1 thread"

For each metric of reports/eval/metrics.json: the base run's value with its 95% bootstrap interval over the test
images (reports/eval/intervals.json at --base), each other run's value, and whether it lies inside that interval.
Each run is read from git (a commit, or the commit of a DVC experiment: `dvc exp show --sha`), so nothing is
recomputed. Writes reports/spread.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from pipeline.tools.docs import REPO

EVAL = "reports/eval"


def at(rev: str, path: str) -> dict:
    """A JSON file of the repository at git revision `rev`."""
    r = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"error: {path} at {rev}: {r.stderr.strip()}; name a commit that holds the evaluation")
    return json.loads(r.stdout)


def inside(value: float | None, interval: list[float]) -> bool:
    return value is not None and interval[0] <= value <= interval[1]


def rows(base: dict, intervals: dict, others: list[dict]) -> list[str]:
    """One Markdown row per metric with an interval: base value [interval], then each other value and its place."""
    out = []
    for key in (k for k in base if k in intervals):
        lo, hi = intervals[key]
        cells = [f"{o[key]:.4g} ({'inside' if inside(o[key], intervals[key]) else 'outside'})" if key in o else "-"
                 for o in others]
        out.append(f"| `{key}` | {base[key]:.4g} [{lo:.4g}, {hi:.4g}] | " + " | ".join(cells) + " |")
    return out


def markdown(base_rev: str, base_label: str, others: list[tuple[str, str]]) -> str:
    base, intervals = at(base_rev, f"{EVAL}/metrics.json"), at(base_rev, f"{EVAL}/intervals.json")
    runs = [at(rev, f"{EVAL}/metrics.json") for rev, _ in others]
    table = rows(base, intervals, runs)
    held = [sum(inside(run.get(k), intervals[k]) for k in base if k in intervals) for run in runs]
    head = "| metric | " + f"{base_label} ({base_rev}) [95% interval] | " + " | ".join(
        f"{label} ({rev})" for rev, label in others) + " |"
    counts = "; ".join(f"{label}: {n} of {len(table)} inside" for (_, label), n in zip(others, held, strict=True))
    return "\n".join([
        "# The default run under another float order", "",
        f"Made by `python -m pipeline.studies.spread` from the evaluations committed at each revision. The same params, "
        f"data and code; only the order of float operations differs. Inside the base's interval: {counts}.", "",
        head, "|" + "---|" * (2 + len(others)), *table, ""])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.studies.spread", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="HEAD", help="the reference run's revision (default: HEAD)")
    ap.add_argument("--base-label", default="committed", help="what the reference run is, in words")
    ap.add_argument("--other", nargs=2, action="append", required=True, metavar=("REV", "LABEL"),
                    help="another run of the same configuration: its revision and what differs, in words")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "spread.md")
    args = ap.parse_args(argv)
    base = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=REPO, capture_output=True, text=True).stdout.strip()
    others = [(subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True).stdout.strip()
               or rev, label) for rev, label in args.other]
    text = markdown(base, args.base_label, others)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
