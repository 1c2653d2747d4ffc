"""Stage `evaluator`: train the FCN-score segmenter on REAL target-domain photos (trainB) and
their labels, and score it on the real test photos: the upper bound printed beside every FCN-score.

Datasets without labels get a file that says the FCN-score is unavailable, and why.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline import checkpoint
from pipeline.config import Params
from pipeline.data.datasets import list_images, load_uint8
from pipeline.metrics.math import IGNORE, confusion_matrix, fcn_scores
from pipeline.metrics.segmenter import NAME, FCN8sMini, segment, train_segmenter
from pipeline.stages.common import run_stage, stage_main
from pipeline.stages.train import read_manifest, resolve_device

log = logging.getLogger("pipeline")


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1], the range of every network here."""
    return images_uint8.float() / 127.5 - 1


def load_evaluator(path: str | Path) -> tuple[dict, FCN8sMini | None]:
    state = checkpoint.load(path)
    if not state["available"]:
        return state, None
    net = FCN8sMini(state["n_classes"], state["width"])
    net.load_state_dict(state["state_dict"])
    return state, net.eval()


def run(params: Params, *, progress: bool = True) -> dict:
    manifest, _ = read_manifest(Path(params.paths.prepared))
    prepared, e = Path(params.paths.prepared), params.evaluator
    if "trainB" not in manifest["labels"] or "palette" not in manifest:
        reason = f"dataset {manifest['dataset']} has no class labels for its photos (domain B)"
        log.warning("FCN-score unavailable: %s", reason)
        checkpoint.save(params.paths.evaluator, {"available": False, "reason": reason})
        return {"available": False, "reason": reason}
    device = resolve_device(e.device)
    classes = manifest["classes"]
    photos = to_unit(load_uint8(list_images(prepared / "trainB")))
    labels = load_uint8(list_images(prepared / manifest["labels"]["trainB"]), labels=True)
    bar = tqdm(total=e.epochs, desc=f"evaluator {NAME}", disable=not progress)

    def tick(loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    net = train_segmenter(photos.to(device), labels.to(device), n_classes=len(classes), width=e.width,
                          epochs=e.epochs, batch_size=e.batch_size, lr=e.lr, seed=e.seed, ignore_index=IGNORE,
                          progress=tick).cpu()
    bar.close()
    test = to_unit(load_uint8(list_images(prepared / "testB")))
    truth = load_uint8(list_images(prepared / manifest["labels"]["testB"]), labels=True)
    cm = confusion_matrix(segment(net, test).numpy(), truth.numpy(), len(classes))
    upper = fcn_scores(cm)
    state = {"available": True, "name": NAME, "n_classes": len(classes), "width": e.width, "classes": classes,
             "ignore_label": manifest.get("ignore_label", IGNORE), "resolution": int(photos.shape[-1]),
             "trained_on": f"{len(photos)} real trainB photos of {manifest['dataset']}",
             "upper_bound": upper, "upper_bound_n": len(test), "confusion_real": torch.from_numpy(cm),
             "state_dict": net.state_dict()}
    checkpoint.save(params.paths.evaluator, state)
    log.info("evaluator %s on real test photos (upper bound): %s", NAME, json.dumps(upper))
    return {"available": True, "upper_bound": upper}


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main("evaluator", argv)
    result = run_stage(run, params)
    if result["available"]:
        u = result["upper_bound"]
        print(f"{NAME} on real test photos: pixel acc {u['pixel_acc']:.3f}, class acc {u['class_acc']:.3f}, "
              f"class IoU {u['class_iou']:.3f} -> {params.paths.evaluator}")
    else:
        print(f"FCN-score unavailable: {result['reason']}")


if __name__ == "__main__":
    main()
