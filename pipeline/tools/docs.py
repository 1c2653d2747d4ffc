"""The docs' generated parts, written into the committed pages so that every page reads complete as plain
Markdown (on a code host) as well as in the mkdocs site:

    python -m pipeline.tools.docs           # rewrite every page's generated parts from their sources
    python -m pipeline.tools.docs --check   # exit 1 naming the pages whose generated parts are stale

A page marks a generated part with a pair of comment lines; what stands between them is replaced:

    <!-- generated: parameters -->  ...  <!-- end generated -->       every params.yaml key (pipeline/reference.py)
    <!-- generated: metrics -->  ...  <!-- end generated -->          every metric key, with the committed run's weights
    <!-- generated: paper-schedule-cpu -->, <!-- generated: experiment-floor-cpu -->: sentences from a benchmark
    <!-- include: reports/x.md -->  ...  <!-- end include -->         a report, as committed
    <!-- include: reports/x.md#heading -->  ...  <!-- end include --> the body of one section of a report

An included report's relative links are rewritten to resolve from the including page's folder. A number a
report holds thus reaches the README and the docs only through this command, never by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parents[2]
PART = re.compile(r"(<!-- (generated|include): (\S+) -->\n)(.*?)(<!-- end \2 -->)", re.S)
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
EXTERNAL = re.compile(r"^([a-z]+:|#|/)")
# A code block marked for the suite: `<!-- runnable -->` (run in the pages' order on the tiny configuration),
# `<!-- runnable: setup -->` (a set-up command), `<!-- needs: gpu|network, <why> -->` (not run here).
BLOCK = re.compile(r"<!-- (runnable|runnable: setup|needs: (?:gpu|network), [^>]+) -->\n```\w*\n(.*?)```", re.S)


def block_commands(body: str) -> list[str]:
    """A marked block's commands, one per line, trailing comments and blank lines dropped."""
    return [c for c in (line.split("  #")[0].strip() for line in body.splitlines()) if c]


def marked_commands(page: Path, kind: str) -> list[str]:
    """The commands of `page`'s code blocks marked `kind`, in order."""
    return [c for k, body in BLOCK.findall(page.read_text()) if k == kind for c in block_commands(body)]


def readme_commands() -> dict[str, str]:
    """The commands a newcomer waits for, as the README's marked blocks show them: its two set-up commands
    (install, then the main job or the tests) and its experiment."""
    readme = REPO / "README.md"
    main_job, tests = marked_commands(readme, "runnable: setup")
    experiment = next(c for c in marked_commands(readme, "runnable") if c.startswith("dvc exp run"))
    return {"main job": main_job, "tests": tests, "experiment": experiment}


def parameters() -> str:
    from pipeline.reference import parameters_markdown

    return parameters_markdown(yaml.safe_load((REPO / "params.yaml").read_text()))


def metrics() -> str:
    from pipeline.reference import metrics_markdown

    return metrics_markdown(json.loads((REPO / "reports" / "eval" / "protocol.json").read_text()))


# The CycleGAN paper's schedule on horse2zebra: 100 + 100 epochs (Sec. 4) of max(|trainA|, |trainB|) = max(1067, 1334)
# steps at batch 1 in the authors' archive.
PAPER_STEPS = 200 * 1334


def paper_schedule_cpu() -> str:
    """The paper's horse2zebra schedule at the paper-size step rate the CPU benchmark measured."""
    bench = json.loads((REPO / "reports" / "benchmark" / "cpu-paper.json").read_text())
    rate = next(r["images_per_s"] for r in bench["training"] if r["config"] == "paper" and r["path"] == "baseline")
    return (f"The paper's schedule, {PAPER_STEPS:,} steps at 256px, at the {rate:.3f} steps/s that "
            f"[the CPU benchmark](reports/benchmark/cpu-paper.md) measured for that step ({bench['device']}): "
            f"about {PAPER_STEPS / rate / 86400:.0f} days.")


def experiment_floor_cpu() -> str:
    """The README's experiment against its floor, and how far its stages other than training already take it,
    from the stage benchmark."""
    bench = json.loads((REPO / "reports" / "benchmark" / "stages-cpu.json").read_text())
    flow = next(w for w in bench["workflows"] if w["workflow"] == "experiment")
    stage = {r["stage"]: r for r in bench["stages"]}
    routes = ", ".join(f"{name} {max(p['routes'][name] for p in bench['peaks']):.0f}" for name in bench["peaks"][0]["routes"])
    others = [s for s in flow["stages"] if s != "train"]
    rest = sum(stage[s]["seconds"] for s in others)
    best = (rest + stage["train"]["floor_s"]) / flow["floor_s"]
    return (f"On {bench['device']} (the stage benchmark, `reports/benchmark/stages-cpu.md`), `{flow['command']}` "
            f"took {flow['seconds']:.0f} s against a floor of {flow['floor_s']:.0f} s: **{flow['wall_over_floor']:.1f}x "
            f"its floor**, at a peak of {bench['peak_gflops']:.0f} GFLOP/s (GFLOP/s by route: {routes}). Its "
            f"training stage ran at {stage['train']['wall_over_floor']:.1f}x its own floor. Its other stages "
            f"({', '.join(others)}) took {rest:.0f} s when timed alone: with training at its floor "
            f"({stage['train']['floor_s']:.0f} s), the experiment would be {best:.1f}x its floor, "
            + ("so 2x is out of reach here without changing what the default run computes." if best > 2 else
               "so 2x is within reach of a faster training step alone.")) + "\n"


GENERATED: dict[str, Callable[[], str]] = {"parameters": parameters, "metrics": metrics,
                                           "paper-schedule-cpu": paper_schedule_cpu,
                                           "experiment-floor-cpu": experiment_floor_cpu}


def slug(heading: str) -> str:
    """A heading's anchor as code hosts and mkdocs' toc make it: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def section(text: str, anchor: str, source: str) -> str:
    """The body of the section whose heading has `anchor`: from below the heading to the next heading of the same
    or a higher level."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        level = len(line) - len(line.lstrip("#"))
        if level and slug(line[level:]) == anchor:
            end = next((j for j in range(i + 1, len(lines))
                        if 0 < len(lines[j]) - len(lines[j].lstrip("#")) <= level), len(lines))
            return "".join(lines[i + 1:end]).strip("\n") + "\n"
    raise ValueError(f"{source}: no heading with anchor #{anchor}")


def relinked(text: str, source: Path, page: Path) -> str:
    """`text` of file `source` with its relative links and images pointing from `page`'s folder instead."""
    def move(m: re.Match) -> str:
        target = m.group(2)
        if EXTERNAL.match(target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        moved = os.path.relpath(source.parent / path, page.parent).replace(os.sep, "/")
        return m.group(1) + moved + (f"#{anchor}" if anchor else "") + m.group(3)
    return LINK.sub(move, text)


def include(spec: str, page: Path) -> str:
    rel, _, anchor = spec.partition("#")
    source = REPO / rel
    if not source.is_file():
        raise ValueError(f"{page.relative_to(REPO)} includes {rel}, which does not exist: make it with the command its "
                         f"page names, or remove the include")
    text = source.read_text()
    body = section(text, anchor, rel) if anchor else text
    return relinked(body, source, page).strip("\n") + "\n"


def render(page: Path, text: str) -> str:
    """`text` of `page` with every generated part made anew."""
    def part(m: re.Match) -> str:
        kind, spec = m.group(2), m.group(3)
        if kind == "generated":  # a generated part's links are written from the repository's root
            body = relinked(GENERATED[spec](), REPO / "README.md", page).strip("\n") + "\n"
        else:
            body = include(spec, page)
        return f"{m.group(1)}\n{body}\n{m.group(5)}"
    return PART.sub(part, text)


def pages() -> list[Path]:
    """The README and every Markdown page under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def stale() -> list[Path]:
    return [p for p in pages() if render(p, p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.tools.docs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only list the stale pages (exit 1 if any)")
    args = ap.parse_args(argv)
    if args.check:
        old = stale()
        for p in old:
            print(f"{p.relative_to(REPO)}: generated parts are stale; run python -m pipeline.tools.docs")
        sys.exit(1 if old else 0)
    failed = False
    for p in pages():
        text = p.read_text()
        try:
            new = render(p, text)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            failed = True
            continue
        if new != text:
            p.write_text(new)
            print(f"wrote {p.relative_to(REPO)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
