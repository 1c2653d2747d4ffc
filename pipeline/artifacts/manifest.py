"""data/prepared/manifest.json: what the prepare stage made (counts, sizes, hashes, pairs, labels,
rejected files with reasons); later stages read the data's layout from it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import StageError
from pipeline.io import write_json

if TYPE_CHECKING:
    from pipeline.config import Params
    from pipeline.data.registry import DatasetSpec

NAME = "manifest.json"
DOMAINS = ("trainA", "trainB", "testA", "testB")
LABEL_DIRS = {"trainB": "trainB_labels", "testB": "testB_labels"}  # class-id maps of the photos


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path, spec: DatasetSpec, load_size: int, rejected: list, extra: dict) -> dict:
    """The manifest of the prepared folder `out`."""
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    files = {f"{d}/{f.name}": _sha256(f) for d in folders for f in sorted((out / d).iterdir())}
    counts = {d: sum(1 for k in files if k.startswith(d + "/")) for d in folders}
    paired = spec.layout in ("synthetic", "aligned")
    return {
        "dataset": spec.name,
        "layout": spec.layout,
        "load_size": load_size,
        "counts": counts,
        "pairs": {
            "train": (["paired_trainA", "trainB"] if spec.layout == "synthetic" else ["trainA", "trainB"]) if paired else None,
            "test": ["testA", "testB"] if paired else None,
        },
        "labels": {d: lab for d, lab in LABEL_DIRS.items() if lab in folders},
        "files": files,
        "rejected": rejected,
        **extra,
    }


def write(out: Path, manifest: dict) -> None:
    write_json(out / NAME, manifest)


def read(prepared: str | Path) -> tuple[dict, str]:
    """(manifest, its exact text: the training fingerprint hashes it)."""
    path = Path(prepared) / NAME
    if not path.exists():
        raise StageError(f"{path} missing; run the prepare stage first (dvc repro prepare)")
    text = path.read_text()
    return json.loads(text), text


def check_test_set(params: Params, manifest: dict) -> None:
    """Params rules that need the prepared data (the test-set size), checked before any work."""
    counts = manifest["counts"]
    params.check_test_set_size(min(counts.get("testA", 0), counts.get("testB", 0)))
