"""Sanity baselines for the metrics: the trained model beside an untrained one (same constructor,
same seed, no step taken) and the identity mapping (every "translation" is its input).

    python -m pipeline.baselines        # after `dvc repro`; writes reports/baselines.md

A metric that does not rank trained > untrained and trained > identity where it should cannot be
trusted to rank ablations either. Not a DVC stage: it is a check of the metrics, not an experiment.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from pipeline import checkpoint
from pipeline.config import Params
from pipeline.io import atomic_dir, write_json, write_text
from pipeline.models.gan import MODEL_BUILDERS
from pipeline.stages import evaluate, translate
from pipeline.stages.common import run_stage, stage_main
from pipeline.stages.train import final_checkpoint, set_determinism

def with_paths(params: Params, **paths: str) -> Params:
    return dataclasses.replace(params, paths=dataclasses.replace(params.paths, **paths))


def untrained_translations(params: Params, folder: Path) -> Path:
    set_determinism(params.seed, params.train.deterministic)
    model = MODEL_BUILDERS[params.model](params, torch.device("cpu"))
    path = folder / "untrained.pt"
    checkpoint.save(path, final_checkpoint(params, model, "untrained", None, None, 0))
    p = with_paths(params, model=str(path), translated=str(folder / "untrained"))
    translate.translate(p, progress=False)
    return folder / "untrained"


def identity_translations(params: Params, folder: Path) -> Path:
    """Every route's output is its input image, unchanged."""
    info = translate.json_info(params.paths.translated)
    prepared = Path(params.paths.prepared)
    with atomic_dir(folder / "identity") as out:
        for route, spec in info["routes"].items():
            shutil.copytree(prepared / spec["input"], out / route)
        write_json(out / "info.json", {**info, "mlflow_run_id": None, "model": "identity"})
    return folder / "identity"


def run(params: Params) -> pd.DataFrame:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {"trained": Path(params.paths.translated), "untrained": untrained_translations(params, tmp),
                   "identity": identity_translations(params, tmp)}
        for name, translated in sources.items():
            p = with_paths(params, translated=str(translated), metrics=str(tmp / f"{name}.json"),
                           eval_reports=str(tmp / f"{name}-reports"))
            rows[name] = evaluate.evaluate(p, progress=False, track=False)
    table = pd.DataFrame(rows)
    table = table[table["trained"].map(lambda v: isinstance(v, float))]
    table["beats untrained"] = [verdict(k, r["trained"], r["untrained"], "untrained") for k, r in table.iterrows()]
    table["beats identity"] = [verdict(k, r["trained"], r["identity"], "identity") for k, r in table.iterrows()]
    return table


def verdict(key: str, trained: float, other: float, baseline: str) -> str:
    """'yes'/'no', or why the comparison cannot separate them by construction."""
    if key.startswith("fcn_real_"):
        return "n/a: upper bound, model-free"
    if key.endswith("_std"):
        return "n/a: a spread"
    if key.startswith("cycle_") and baseline == "identity":
        return "n/a: identity cycles perfectly"
    higher = evaluate.higher_is_better(key)
    return "yes" if (trained > other if higher else trained < other) else "no"


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main("baselines", argv)
    table = run_stage(run, params)
    out = Path(params.paths.metrics).parent / "baselines.md"
    text = ("# Metric sanity check: trained vs untrained vs identity\n\n"
            f"Dataset `{params.data.dataset}`, model `{params.model}`; protocols in "
            f"`{params.paths.eval_reports}/protocol.json`. Made by `python -m pipeline.baselines`.\n\n"
            + table.to_markdown(floatfmt=".4f") + "\n")
    write_text(out, text)
    print(text)


if __name__ == "__main__":
    main()
