"""Stage `prepare`: data/raw/<dataset>/, or the local folder data.local.path -> data/prepared/
(params `data.dataset`, `data.local`, `prepare`).

Decodes every image once, converts it to RGB, resizes it to load_size and writes lossless PNGs:

    trainA/ trainB/            the two training domains (unpaired for CycleGAN)
    testA/ testB/              test domains; paired by file name where the dataset is paired
    trainB_labels/ testB_labels/   class-id maps of the photos, where the dataset has them
    paired_trainA/             (synthetic) label maps of the trainB scenes, for the paired baseline
    manifest.json              counts, sizes, SHA-256 of every file, rejected files with reasons, the
                               domains' names ({"A": "label", "B": "day"}), the label-map domain

The multi-domain world (synthetic_multi) gives train<X>/ test<X>/ for each of its domains selected by
params data.domains, X = A, B, C, ... in that order, and train<X>_labels/ test<X>_labels/ for each
photo domain; its test scenes are shared by every domain (paired).

Nothing is dropped silently: an unusable file is listed in the manifest with its reason, and the
stage fails (leaving any earlier data/prepared untouched) if a domain ends up empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.artifacts import manifest as manifest_file
from pipeline.artifacts.manifest import DOMAINS, LABEL_DIRS
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params, PrepareParams
from pipeline.data import local
from pipeline.data.images import RejectedImage, decode_rgb, fit, load_label_map, sources, split_aligned
from pipeline.data.labels import IGNORE, nearest_palette
from pipeline.data.registry import DatasetSpec, dataset_spec
from pipeline.domains import LETTERS, labels_dir, paired_train_dir, test_dir, train_dir
from pipeline.errors import StageError
from pipeline.io import atomic_dir


def _find_root(folder: Path, marker: str) -> Path:
    """The folder inside an extracted archive that holds `marker` (archives nest a top folder)."""
    hits = sorted((p.parent for p in folder.rglob(marker) if p.is_dir()), key=lambda p: len(p.parts))
    if hits:
        return hits[0]
    raise StageError(f"{folder}: no '{marker}/' folder found; is data/raw complete? Re-run the download stage")


class Writer:
    """Writes prepared images into the temporary output folder and keeps the books."""

    def __init__(self, out: Path):
        self.out = out
        self.rejected: list[dict[str, str]] = []
        self.origin: dict[str, Path] = {}  # "trainA/x.png" -> the raw file it was made from

    def reject(self, src: Path, reason: str) -> None:
        self.rejected.append({"file": str(src), "reason": reason})

    def save(self, src: Path, sub: str, img: Image.Image) -> None:
        dest = self.out / sub / (src.stem + ".png")
        dest.parent.mkdir(exist_ok=True)
        if dest.exists():
            self.reject(src, f"duplicate name: {sub}/{dest.name} already written from another file")
            return
        img.save(dest, format="PNG")
        self.origin[f"{sub}/{dest.name}"] = src

    def images(self, src_dir: Path, sub: str, p: PrepareParams, progress: bool) -> None:
        (self.out / sub).mkdir(exist_ok=True)
        for src in tqdm(sources(src_dir), desc=sub, disable=not progress):
            try:
                if sub.endswith("_labels"):
                    img = load_label_map(src, size=p.load_size, max_pixels=p.max_pixels)
                else:
                    img = fit(decode_rgb(src, p.max_pixels), size=p.load_size, min_size=p.min_size)
            except RejectedImage as e:
                self.reject(src, str(e))
                continue
            self.save(src, sub, img)

    def aligned(self, src_dir: Path, subs: tuple[str, str], a_side: str, p: PrepareParams, progress: bool) -> None:
        """pix2pix archives: split each side-by-side pair into our A and B."""
        for sub in subs:
            (self.out / sub).mkdir(exist_ok=True)
        for src in tqdm(sources(src_dir), desc="/".join(subs), disable=not progress):
            try:
                left, right = split_aligned(decode_rgb(src, p.max_pixels))
                a, b = (left, right) if a_side == "left" else (right, left)
                a, b = fit(a, size=p.load_size, min_size=p.min_size), fit(b, size=p.load_size, min_size=p.min_size)
            except RejectedImage as e:
                self.reject(src, str(e))
                continue
            self.save(src, subs[0], a)
            self.save(src, subs[1], b)

    def keep_pairs(self, subs: tuple[str, ...]) -> None:
        """Paired folders must match file for file: a file without its counterpart is rejected."""
        present = [s for s in subs if (self.out / s).is_dir()]
        names = {s: {p.name for p in (self.out / s).iterdir()} for s in present}
        common = set.intersection(*names.values()) if names else set()
        for s in present:
            for name in sorted(names[s] - common):
                missing = [o for o in present if name not in names[o]]
                (self.out / s / name).unlink()
                self.reject(self.origin[f"{s}/{name}"], f"no counterpart in {', '.join(missing)}")


def derive_labels(out: Path, spec: DatasetSpec) -> dict:
    """Class-id maps of the B photos from their paired A colour label maps (e.g. Cityscapes)."""
    palette = np.array([c for _, c in spec.label_classes], dtype=np.uint8)
    for a, lab in ((train_dir("A"), LABEL_DIRS[train_dir("B")]), (test_dir("A"), LABEL_DIRS[test_dir("B")])):
        (out / lab).mkdir(exist_ok=True)
        for f in sorted((out / a).glob("*.png")):
            with Image.open(f) as img:
                ids = nearest_palette(np.asarray(img.convert("RGB")), palette, spec.label_tolerance)
            Image.fromarray(ids, mode="L").save(out / lab / f.name)
    return label_info(spec, f"nearest {spec.name} palette colour of the A label maps (farther than "
                            f"{spec.label_tolerance} -> ignore)")


def label_info(spec: DatasetSpec, labels_from: str) -> dict:
    """The manifest's description of the class-id maps (what the FCN-score reads)."""
    assert spec.label_classes
    return {"classes": [n for n, _ in spec.label_classes], "palette": [list(c) for _, c in spec.label_classes],
            "ignore_label": IGNORE, "labels_from": labels_from, "label_domain": "A"}


def prepare_multi(raw: Path, w: Writer, selected: tuple[str, ...] | None, p: PrepareParams, progress: bool
                  ) -> tuple[dict[str, str], dict]:
    """The multi-domain world: the selected domains (params data.domains, null = all) as A, B, C, ... in
    that order, each photo domain with its class-id maps; returns ({letter: domain}, manifest extra)."""
    info = json.loads((raw / "dataset.json").read_text())
    names = list(selected or info["domains"])
    letters = dict(zip(LETTERS, names, strict=False))
    for letter, name in letters.items():
        train, test = train_dir(letter), test_dir(letter)
        w.images(raw / f"train_{name}", train, p, progress)
        w.images(raw / f"test_{name}", test, p, progress)
        if name != info["label_domain"]:
            w.images(raw / f"train_{name}_labels", labels_dir(train), p, progress)
            w.images(raw / "test_labels", labels_dir(test), p, progress)
            w.keep_pairs((train, labels_dir(train)))
    w.keep_pairs(tuple(f for letter in letters for f in (test_dir(letter), labels_dir(test_dir(letter)))
                       if (w.out / f).is_dir()))
    label = [letter for letter, name in letters.items() if name == info["label_domain"]]
    extra = {k: info[k] for k in ("classes", "palette", "ignore_label")}
    return letters, {**extra, "label_domain": label[0] if label else None}


def run(params: Params, *, progress: bool = True) -> dict:
    spec = dataset_spec(params.data)
    if params.data.dataset == "local":
        raw = local.check_layout(Path(params.data.local.path), spec)
        spec = local.with_labels(raw, spec)
    else:
        raw = Path(params.paths.raw) / spec.name
        if not raw.is_dir():
            raise StageError(f"{raw}: raw dataset missing; run the download stage first (dvc repro download)")
    p = params.prepare
    extra: dict = {}
    letters: dict[str, str] | None = None
    with atomic_dir(params.paths.prepared) as out:
        w = Writer(out)
        if spec.layout == "synthetic_multi":
            letters, extra = prepare_multi(raw, w, params.data.domains, p, progress)
        elif spec.layout == "synthetic":
            for sub in (*DOMAINS, *LABEL_DIRS.values(), paired_train_dir("A")):
                w.images(raw / sub, sub, p, progress)
            meta = raw / "dataset.json"
            if meta.exists():
                info = json.loads(meta.read_text())
                extra = {**{k: info[k] for k in ("classes", "palette", "ignore_label")}, "label_domain": "A"}
            letters = {"A": "label", "B": "day"}
        elif spec.layout == "unaligned":
            root = raw if params.data.dataset == "local" else _find_root(raw / "files", train_dir("A"))
            for sub in DOMAINS:
                w.images(root / sub, sub, p, progress)
        else:
            root = raw if params.data.dataset == "local" else _find_root(raw / "files", "train")
            w.aligned(root / "train", (train_dir("A"), train_dir("B")), spec.a_side, p, progress)
            w.aligned(root / spec.test_split, (test_dir("A"), test_dir("B")), spec.a_side, p, progress)
        if spec.label_classes and all((raw / d).is_dir() for d in LABEL_DIRS.values()):
            for sub in LABEL_DIRS.values():  # the user's own class-id maps (local folders)
                w.images(raw / sub, sub, p, progress)
            extra = label_info(spec, f"class-id maps of {raw}")
        elif spec.label_classes:
            extra = derive_labels(out, spec)
        test_pair = (test_dir("A"), test_dir("B"), LABEL_DIRS[test_dir("B")])
        train_b = (train_dir("B"), LABEL_DIRS[train_dir("B")])
        if spec.layout == "synthetic_multi":
            pass  # pairs kept by prepare_multi
        elif spec.layout == "synthetic":
            w.keep_pairs(test_pair)
            w.keep_pairs((paired_train_dir("A"), *train_b))
        else:  # pairs A|B of a paired test set, and photos with their class-id maps (folders absent: no-op)
            w.keep_pairs(test_pair if spec.layout == "aligned" else test_pair[1:])
            w.keep_pairs(train_b)
        folders = [f(d) for f in (train_dir, test_dir) for d in letters] if letters else DOMAINS
        empty = [d for d in folders if not any((out / d).glob("*.png"))]
        if empty:
            reasons = "; ".join(f"{r['file']}: {r['reason']}" for r in w.rejected[:5])
            raise StageError(f"{raw}: domain(s) {', '.join(empty)} empty after preparation "
                             f"({len(w.rejected)} files rejected{': ' + reasons if reasons else ''}); "
                             f"data/prepared was left as it was")
        manifest = manifest_file.build(out, spec, p.load_size, w.rejected, extra, letters)
        manifest_file.write(out, manifest)
    return manifest


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    manifest = run_stage(run, params)
    counts = ", ".join(f"{k}={v}" for k, v in manifest["counts"].items())
    print(f"prepared {manifest['dataset']} at {manifest['load_size']}px: {counts}; "
          f"{len(manifest['rejected'])} rejected (see {params.paths.prepared}/manifest.json)")


if __name__ == "__main__":
    main()
