"""The evaluation's reports (paths.eval_reports), written by the evaluate stage (metrics/evaluation.py) and read
back by the record stage, which copies them into the MLflow run of the training that made the model:

    metrics.json    every metric, flat {key: number}; a metric that could not be computed is absent
    protocol.json   {key: its protocol}, and for an absent metric {"unavailable": why}
    intervals.json  {key: [low, high]}: the 95% bootstrap interval of every metric that has one
    per_image.csv   per-image values of the metrics that have them
    grid.png        input | translation | real target, per direction
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.errors import StageError

METRICS, PROTOCOL, INTERVALS, PER_IMAGE, GRID = "metrics.json", "protocol.json", "intervals.json", "per_image.csv", "grid.png"
FILES = (METRICS, PROTOCOL, INTERVALS, PER_IMAGE, GRID)


def paths(folder: str | Path) -> list[Path]:
    """The report files of `folder`; one error naming the first missing file and the fix."""
    files = [Path(folder) / name for name in FILES]
    missing = next((f for f in files if not f.is_file()), None)
    if missing is not None:
        raise StageError(f"{missing} missing; run the evaluate stage first (dvc repro evaluate)")
    return files


def read_json(folder: str | Path, name: str) -> dict:
    return json.loads((Path(folder) / name).read_text())


def digest(folder: str | Path) -> str:
    """SHA-256 over the reports' names and bytes: what an MLflow run's record of them is checked against."""
    h = hashlib.sha256()
    for f in paths(folder):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def mlflow_metrics(folder: str | Path) -> dict[str, float]:
    """The reports as MLflow metric keys: eval/<key> for every number, eval_ci95/<key>/low and /high for
    every interval."""
    values = {f"eval/{k}": float(v) for k, v in read_json(folder, METRICS).items()}
    ends = {f"eval_ci95/{k}/{end}": float(v) for k, lo_hi in read_json(folder, INTERVALS).items()
            for end, v in zip(("low", "high"), lo_hi, strict=True)}
    return {**values, **ends}


def unavailable_lines(protocols: dict[str, dict]) -> list[str]:
    """'<keys>: <reason>', one line per reason, of the metrics protocol.json marks unavailable: for the log
    and the MLflow run's eval.unavailable tag."""
    reasons: dict[str, list[str]] = {}
    for key, protocol in protocols.items():
        if "unavailable" in protocol:
            reasons.setdefault(protocol["unavailable"], []).append(key)
    return [f"{', '.join(keys)}: {why}" for why, keys in reasons.items()]
