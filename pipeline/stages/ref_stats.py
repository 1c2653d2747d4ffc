"""Stage `ref_stats`: the real test images of every domain (data/prepared/testA, testB, ...) -> their
Inception features under every FID protocol (paths.ref_stats/<protocol>-{testA,testB,...}.pt and
protocol.json).

Computed once and reused by every experiment through the DVC cache: real-image features never
depend on the model. KID needs the features themselves, FID only their mean and covariance, so the
features are stored. The protocols (pipeline/metrics/inception.py, PROTOCOLS) share the network and
differ in how images are resized to 299. If a protocol's network cannot be had,
`<protocol>-unavailable.json` says why and the evaluate stage reports its FID and KID as unavailable
with that reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.artifacts import features as reference_features
from pipeline.artifacts import manifest as manifest_file
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.data.datasets import list_images, load_uint8
from pipeline.errors import Unavailable
from pipeline.io import atomic_dir, write_json
from pipeline.metrics import inception
from pipeline.runtime import configure_threads, resolve_device

log = logging.getLogger("pipeline")


def run(params: Params) -> dict:
    """Features of every test domain under every FID protocol; {protocol: counts or the reason it is unavailable}."""
    prepared = Path(params.paths.prepared)
    manifest, _ = manifest_file.read(prepared)
    e = params.evaluate
    configure_threads(e.num_threads, "evaluate.num_threads")
    device = resolve_device(e.device, "evaluate.device")
    images = {domain: (list_images(prepared / domain), load_uint8(list_images(prepared / domain)))
              for domain in manifest_file.test_folders(manifest)}
    summary: dict = {}
    with atomic_dir(params.paths.ref_stats) as out:
        for protocol in inception.PROTOCOLS:
            if protocol not in inception.PROTOCOL_SETS[e.fid_protocols]:
                reason = f"not computed: evaluate.fid_protocols={e.fid_protocols}; set it to all"
                reference_features.save_unavailable(out, protocol, reason)
                summary[protocol] = {"unavailable": reason}
                continue
            try:
                features, source = inception.protocol_extractor(protocol, e.inception_weights, device)
            except Unavailable as err:
                log.warning("FID/KID (%s) unavailable: %s", protocol, err)
                reference_features.save_unavailable(out, protocol, str(err))
                summary[protocol] = {"unavailable": str(err)}
                continue
            for domain, (files, pixels) in images.items():
                reference_features.save(out, protocol, domain, features(pixels, e.batch_size),
                                        [f.name for f in files], int(pixels.shape[-1]), inception.EXTRACTOR, source)
            summary[protocol] = {domain: len(files) for domain, (files, _) in images.items()}
        write_json(out / "protocol.json", {"extractor": inception.EXTRACTOR, "protocols": {
            p: {"resize": inception.PROTOCOLS[p][1], **summary[p]} for p in inception.PROTOCOLS}})
    return summary


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    summary = run_stage(run, params)
    print(f"reference features: {summary} -> {params.paths.ref_stats}")


if __name__ == "__main__":
    main()
