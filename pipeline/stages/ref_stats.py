"""Stage `ref_stats`: the real test images (data/prepared/testA, testB) -> their Inception features
(paths.ref_stats/{testA,testB}.pt and protocol.json).

Computed once and reused by every experiment through the DVC cache: real-image features never
depend on the model. KID needs the features themselves, FID only their mean and covariance, so the
features are stored. If the Inception weights cannot be had, `unavailable.json` says why and the
evaluate stage reports FID and KID as unavailable with that reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.artifacts import features as reference_features
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.data.datasets import list_images, load_uint8
from pipeline.errors import Unavailable
from pipeline.io import atomic_dir, write_json
from pipeline.metrics import inception
from pipeline.runtime import resolve_device

log = logging.getLogger("pipeline")
DOMAINS = ("testA", "testB")


def run(params: Params) -> dict:
    prepared, device = Path(params.paths.prepared), resolve_device(params.evaluate.device, "evaluate.device")
    summary: dict = {}
    with atomic_dir(params.paths.ref_stats) as out:
        try:
            weights = inception.resolve_weights(params.evaluate.inception_weights)
        except Unavailable as e:
            log.warning("FID/KID unavailable: %s", e)
            reference_features.save_unavailable(out, str(e))
            return {"unavailable": str(e)}
        fe = inception.feature_extractor(weights, device)
        for domain in DOMAINS:
            files = list_images(prepared / domain)
            images = load_uint8(files)
            features = inception.extract_features(fe, images, params.evaluate.batch_size, device)
            reference_features.save(out, domain, features, [f.name for f in files], int(images.shape[-1]),
                                    inception.EXTRACTOR, weights.source)
            summary[domain] = len(files)
        write_json(out / "protocol.json", {"extractor": inception.EXTRACTOR, "weights_source": weights.source, "counts": summary})
    return summary


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    summary = run_stage(run, params)
    print(f"reference features: {summary} -> {params.paths.ref_stats}")


if __name__ == "__main__":
    main()
