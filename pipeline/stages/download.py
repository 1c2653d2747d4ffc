"""Stage `download`: params `data` -> data/raw/<dataset>/ (nothing for a local folder, which prepare reads).

Official archives are streamed with HTTP resume, checksummed (recorded on first download, verified
after) and extracted safely; the embedded synthetic dataset is generated instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from pipeline.cli import run_stage, stage_main
from pipeline.config import DataParams, SyntheticParams, to_dict
from pipeline.data import synthetic
from pipeline.data.archives import fetch_archive
from pipeline.data.labels import IGNORE
from pipeline.data.registry import DATASETS
from pipeline.domains import labels_dir, paired_train_dir, test_dir, train_dir
from pipeline.io import atomic_dir, save_png, write_json

log = logging.getLogger("pipeline")


def generate_synthetic(p: SyntheticParams, folder: Path, *, progress: bool = True) -> Path:
    """Write the embedded dataset (see pipeline/data/synthetic.py for the layout) atomically."""
    train_a, train_b, test_a, test_b = train_dir("A"), train_dir("B"), test_dir("A"), test_dir("B")
    # the scene sets are the synthetic world's splits, named as the folders (synthetic.SPLIT_OFFSETS)
    jobs = [(train_a, i) for i in range(p.n_train_a)] + [(train_b, i) for i in range(p.n_train_b)] + \
           [("test", i) for i in range(p.n_test)]
    with atomic_dir(folder) as tmp:
        for sub in (train_a, train_b, labels_dir(train_b), paired_train_dir("A"), test_a, test_b, labels_dir(test_b)):
            (tmp / sub).mkdir()
        for split, i in tqdm(jobs, desc="synthetic", disable=not progress):
            labels, photo = synthetic.make_scene(synthetic.scene_seed(p.seed, split, i), p.image_size)
            name = f"{i:05d}.png"
            if split == train_a:
                save_png(tmp / train_a / name, synthetic.colorize(labels))
            elif split == train_b:
                save_png(tmp / train_b / name, photo)
                save_png(tmp / labels_dir(train_b) / name, labels)
                save_png(tmp / paired_train_dir("A") / name, synthetic.colorize(labels))
            else:
                save_png(tmp / test_a / name, synthetic.colorize(labels))
                save_png(tmp / test_b / name, photo)
                save_png(tmp / labels_dir(test_b) / name, labels)
        write_json(tmp / "dataset.json", {"name": "synthetic", **label_metadata(), "params": to_dict(p)})
    return folder


def generate_multi(p: SyntheticParams, folder: Path, *, progress: bool = True) -> Path:
    """Write the multi-domain world atomically: per domain d (synthetic.MULTI_DOMAINS) train_<d>/ (its own
    scenes) and test_<d>/ (the shared test scenes), train_<d>_labels/ of each photo domain and test_labels/."""
    domains = synthetic.MULTI_DOMAINS
    jobs = [(d, synthetic.TRAIN_SPLITS[d], i) for d in domains
            for i in range(p.n_train_a if d == "label" else p.n_train_b)] + [(None, "test", i) for i in range(p.n_test_multi)]
    with atomic_dir(folder) as tmp:
        for sub in (*(f"{s}_{d}" for s in ("train", "test") for d in domains),
                    *(f"train_{d}_labels" for d in synthetic.CONDITIONS), "test_labels"):
            (tmp / sub).mkdir()
        for domain, split, i in tqdm(jobs, desc="synthetic_multi", disable=not progress):
            name, seed = f"{i:05d}.png", synthetic.scene_seed(p.seed, split, i)
            for d in (domain,) if domain else domains:
                labels, photo = synthetic.make_scene(seed, p.image_size, d if d in synthetic.CONDITIONS else "day")
                kind = "train" if domain else "test"
                save_png(tmp / f"{kind}_{d}" / name, synthetic.colorize(labels) if d == "label" else photo)
                if d in synthetic.CONDITIONS:
                    save_png(tmp / (f"train_{d}_labels" if domain else "test_labels") / name, labels)
        write_json(tmp / "dataset.json", {
            "name": "synthetic_multi", "domains": list(domains), "label_domain": "label",
            **label_metadata(), "params": to_dict(p)})
    return folder


def label_metadata() -> dict:
    """The classes of the embedded worlds' label maps, as the manifest records them."""
    return {"classes": [name for name, _ in synthetic.CLASSES], "palette": [list(c) for _, c in synthetic.CLASSES],
            "ignore_label": IGNORE}


def run(data: DataParams, raw_root: Path, *, progress: bool = True) -> Path:
    """Materialise the raw dataset named by `data` under raw_root/<dataset>; returns that folder."""
    spec = DATASETS[data.dataset]
    folder = raw_root / spec.name
    if spec.layout == "local":  # nothing to fetch: prepare reads data.local.path, a dependency of its own
        raw_root.mkdir(parents=True, exist_ok=True)
        log.info("data.dataset=local: nothing to download; the prepare stage reads %s", data.local.path)
        return Path(data.local.path)
    if spec.layout == "synthetic":
        return generate_synthetic(data.synthetic, folder, progress=progress)
    if spec.layout == "synthetic_multi":
        return generate_multi(data.synthetic, folder, progress=progress)
    url = data.url or spec.url
    assert url is not None
    fetch_archive(url, folder, data.sha256, progress=progress)
    return folder


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    run_stage(run, params.data, Path(params.paths.raw))


if __name__ == "__main__":
    main()
