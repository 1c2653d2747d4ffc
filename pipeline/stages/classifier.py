"""Stage `classifier`: the REAL training images of every domain (data/prepared/trainA, trainB, ...) ->
the domain classifier (paths.classifier) of the classification accuracy (StarGAN, Choi et al. 2018,
Sec. 4.4), with its accuracy on the real test images: the upper bound printed beside every score.
Independent of every experiment, like the FCN-score's segmenter.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.artifacts import classifier as classifier_file
from pipeline.artifacts import manifest as manifest_file
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.data.datasets import list_images, load_uint8, to_unit
from pipeline.domains import train_dir
from pipeline.metrics.domain_classifier import NAME, classify, train_classifier
from pipeline.runtime import configure_threads, resolve_device

log = logging.getLogger("pipeline")


def _tick(bar: tqdm, loss: float) -> None:
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.3f}")


def load_domains(prepared: Path, folders: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of each folder in [-1, 1] and their domain index (the folder's position)."""
    images = [to_unit(load_uint8(list_images(prepared / f))) for f in folders]
    return torch.cat(images), torch.cat([torch.full((len(x),), d) for d, x in enumerate(images)])


def run(params: Params, *, progress: bool = True) -> dict:
    prepared, c = Path(params.paths.prepared), params.classifier
    configure_threads(c.num_threads, "classifier.num_threads")
    manifest, _ = manifest_file.read(prepared)
    domains = manifest["domains"]
    device = resolve_device(c.device, "classifier.device")
    images, labels = load_domains(prepared, [train_dir(d) for d in domains])
    with tqdm(total=c.epochs, desc=f"classifier {NAME}", disable=not progress) as bar:
        net = train_classifier(images.to(device), labels.to(device), n_domains=len(domains), epochs=c.epochs,
                               batch_size=c.batch_size, lr=c.lr, seed=c.seed,
                               progress=functools.partial(_tick, bar)).cpu()
    test, truth = load_domains(prepared, manifest_file.test_folders(manifest))
    correct = classify(net, test, int(images.shape[-1])) == truth
    by_domain = {d: float(correct[truth == i].float().mean()) for i, d in enumerate(domains)}
    upper = float(correct.float().mean())
    classifier_file.save(params.paths.classifier, net, name=NAME, domains=domains, resolution=int(images.shape[-1]),
                         trained_on=f"{len(images)} real training images of {manifest['dataset']}, "
                                    f"domains {', '.join(f'{k} ({v})' for k, v in domains.items())}",
                         upper_bound=upper, upper_bound_by_domain=by_domain, upper_bound_n=len(test))
    log.info("classifier %s on real test images (upper bound): %.4f, per domain %s", NAME, upper, json.dumps(by_domain))
    return {"upper_bound": upper, "by_domain": by_domain}


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    result = run_stage(run, params)
    print(f"{NAME} domain classifier on real test images: accuracy {result['upper_bound']:.4f} "
          f"(per domain {result['by_domain']}) -> {params.paths.classifier}")


if __name__ == "__main__":
    main()
