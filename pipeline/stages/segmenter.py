"""Stage `segmenter`: the REAL training photos (data/prepared/trainB, and of every photo domain of a
multi-domain set) and their labels -> the FCN-score segmenter (paths.segmenter), with its score on the
real test photos: the upper bound printed beside every FCN-score (pooled, and per photo domain).
Datasets without labels get a file that says the FCN-score is unavailable, and why.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.artifacts import manifest as manifest_file
from pipeline.artifacts import segmenter as segmenter_file
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.data.datasets import list_images, load_uint8, to_unit
from pipeline.data.labels import IGNORE
from pipeline.domains import is_test_dir, is_train_dir, letter_of
from pipeline.metrics.math import confusion_matrix, fcn_scores
from pipeline.metrics.segmenter import NAME, segment, train_segmenter
from pipeline.runtime import configure_threads, resolve_device

log = logging.getLogger("pipeline")


def _tick(bar: tqdm, loss: float) -> None:
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.3f}")


def run(params: Params, *, progress: bool = True) -> dict:
    prepared, e = Path(params.paths.prepared), params.segmenter
    configure_threads(e.num_threads, "segmenter.num_threads")
    manifest, _ = manifest_file.read(prepared)
    train = [f for f in manifest["labels"] if is_train_dir(f)]
    test = [f for f in manifest["labels"] if is_test_dir(f)]
    if not train or not test or "palette" not in manifest:
        reason = f"dataset {manifest['dataset']} has no class labels for its photos (domain B)"
        log.warning("FCN-score unavailable: %s", reason)
        segmenter_file.save_unavailable(params.paths.segmenter, reason)
        return {"available": False, "reason": reason}
    device = resolve_device(e.device, "segmenter.device")
    classes = manifest["classes"]
    photos = to_unit(torch.cat([load_uint8(list_images(prepared / f)) for f in train]))
    labels = torch.cat([load_uint8(list_images(prepared / manifest["labels"][f]), labels=True) for f in train])
    with tqdm(total=e.epochs, desc=f"segmenter {NAME}", disable=not progress) as bar:
        net = train_segmenter(photos.to(device), labels.to(device), n_classes=len(classes), width=e.width,
                              epochs=e.epochs, batch_size=e.batch_size, lr=e.lr, seed=e.seed, ignore_index=IGNORE,
                              progress=functools.partial(_tick, bar)).cpu()
    cms = {}
    for f in test:
        truth = load_uint8(list_images(prepared / manifest["labels"][f]), labels=True)
        cms[f] = confusion_matrix(segment(net, to_unit(load_uint8(list_images(prepared / f)))).numpy(), truth.numpy(),
                                  len(classes)), len(truth)
    cm = sum(c for c, _ in cms.values())
    upper = fcn_scores(cm)
    by_domain = {letter_of(f): (fcn_scores(c), n) for f, (c, n) in cms.items()}
    segmenter_file.save(params.paths.segmenter, net, width=e.width, classes=classes,
                        ignore_label=manifest.get("ignore_label", IGNORE), resolution=int(photos.shape[-1]),
                        trained_on=f"{len(photos)} real {' + '.join(train)} photos of {manifest['dataset']}",
                        upper_bound=upper, upper_bound_n=sum(n for _, n in cms.values()), confusion_real=cm,
                        upper_bound_by_domain=by_domain)
    log.info("segmenter %s on real test photos (upper bound): %s", NAME, json.dumps(upper))
    return {"available": True, "upper_bound": upper}


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    result = run_stage(run, params)
    if result["available"]:
        u = result["upper_bound"]
        print(f"{NAME} on real test photos: pixel acc {u['pixel_acc']:.3f}, class acc {u['class_acc']:.3f}, "
              f"class IoU {u['class_iou']:.3f} -> {params.paths.segmenter}")
    else:
        print(f"FCN-score unavailable: {result['reason']}")


if __name__ == "__main__":
    main()
