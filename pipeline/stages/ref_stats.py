"""Stage `ref_stats`: real test images -> their Inception features (paths.ref_stats/{testA,testB}.pt).

Computed once and reused by every experiment through the DVC cache: real-image features never
depend on the model. KID needs the features themselves, FID only their mean and covariance, so the
features are stored. If the Inception weights cannot be had, `unavailable.json` says why and the
evaluate stage reports FID and KID as unavailable with that reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipeline.config import Params
from pipeline.data.datasets import list_images, load_uint8
from pipeline.io import atomic_dir, write_json
from pipeline.metrics import inception
from pipeline.stages.common import run_stage, stage_main
from pipeline.stages.train import resolve_device

log = logging.getLogger("pipeline")
DOMAINS = ("testA", "testB")


def run(params: Params) -> dict:
    prepared, device = Path(params.paths.prepared), resolve_device(params.evaluate.device)
    summary: dict = {}
    with atomic_dir(params.paths.ref_stats) as out:
        try:
            weights = inception.resolve_weights(params.evaluate.inception_weights)
        except inception.Unavailable as e:
            log.warning("FID/KID unavailable: %s", e)
            write_json(out / "unavailable.json", {"reason": str(e)})
            return {"unavailable": str(e)}
        fe = inception.feature_extractor(weights, device)
        for domain in DOMAINS:
            files = list_images(prepared / domain)
            images = load_uint8(files)
            features = inception.extract_features(fe, images, params.evaluate.batch_size, device)
            torch.save({"features": features, "names": [f.name for f in files], "resolution": int(images.shape[-1]),
                        "extractor": inception.EXTRACTOR, "weights_source": weights.source}, out / f"{domain}.pt")
            summary[domain] = len(files)
        write_json(out / "protocol.json", {"extractor": inception.EXTRACTOR, "weights_source": weights.source, "counts": summary})
    return summary


def load(folder: str | Path, domain: str) -> dict:
    """The stored features of one domain, or {'unavailable': reason}."""
    folder = Path(folder)
    if (folder / "unavailable.json").exists():
        import json
        return {"unavailable": json.loads((folder / "unavailable.json").read_text())["reason"]}
    return torch.load(folder / f"{domain}.pt", weights_only=True)


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main("ref_stats", argv)
    summary = run_stage(run, params)
    print(f"reference features: {summary} -> {params.paths.ref_stats}")


if __name__ == "__main__":
    main()
