"""data/prepared/manifest.json: what the prepare stage made (counts, sizes, hashes, pairs, labels,
rejected files with reasons); later stages read the data's layout from it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.domains import TWO_DOMAIN_NAMES, TWO_DOMAINS, labels_dir, letter_of, paired_train_dir, test_dir, train_dir
from pipeline.errors import StageError
from pipeline.io import write_json

if TYPE_CHECKING:
    from pipeline.config import Params
    from pipeline.data.registry import DatasetSpec

NAME = "manifest.json"
# the folders of a two-domain set (domains are letters, as the authors' trainA/trainB: pipeline/domains.py)
DOMAINS = tuple(folder(d) for folder in (train_dir, test_dir) for d in TWO_DOMAINS)  # trainA trainB testA testB
LABEL_DIRS = {f: labels_dir(f) for f in (train_dir("B"), test_dir("B"))}  # class-id maps of the photos


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path, spec: DatasetSpec, load_size: int, rejected: list, extra: dict,
          domains: dict[str, str] | None = None) -> dict:
    """The manifest of the prepared folder `out`. `domains`: {letter: the domain's name} (default A, B).
    `labels` maps each photo folder to its class-id maps; `label_domain` (in `extra`) is the letter of
    a colour label-map domain, when there is one."""
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    files = {f"{d}/{f.name}": _sha256(f) for d in folders for f in sorted((out / d).iterdir())}
    counts = {d: sum(1 for k in files if k.startswith(d + "/")) for d in folders}
    domains = domains or TWO_DOMAIN_NAMES
    paired = spec.layout in ("synthetic", "synthetic_multi", "aligned")
    train_pairs = {"synthetic": [paired_train_dir("A"), train_dir("B")],
                   "aligned": [train_dir("A"), train_dir("B")]}.get(spec.layout)
    return {
        "dataset": spec.name,
        "layout": spec.layout,
        "load_size": load_size,
        "counts": counts,
        "domains": domains,
        "pairs": {
            "train": train_pairs,
            "test": [test_dir(d) for d in domains] if paired else None,
        },
        "labels": {d: labels_dir(d) for d in folders if labels_dir(d) in folders},
        "files": files,
        "rejected": rejected,
        **extra,
    }


def test_folders(manifest: dict) -> list[str]:
    """testA, testB, ... of every domain."""
    return [test_dir(d) for d in manifest["domains"]]


def domain_name(manifest: dict, folder: str) -> str:
    """The name of the domain of a prepared folder (testC -> dusk)."""
    return manifest["domains"][letter_of(folder)]


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
    params.check_test_set_size(min(counts.get(f, 0) for f in test_folders(manifest)))
