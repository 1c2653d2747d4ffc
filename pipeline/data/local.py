"""A folder of the user's own images (data.dataset: local), laid out as the authors' repo expects:

    unaligned (CycleGAN):  trainA/ trainB/ testA/ testB/
    aligned (pix2pix):     train/ test/ (data.local.test_split), each image a side-by-side A|B pair
                           (data.local.a_side says which half is A)
    optional, for the FCN-score:
        labels.json                    {"classes": [names], "palette": [[r, g, b], ...]}: class i's colour
        trainB_labels/ testB_labels/   one-channel class-id maps named as the photos of B; aligned
                                       folders whose A side is a colour label map may omit them (the ids
                                       are then read from A by nearest palette colour, as for Cityscapes)

The images go through the same rules as every dataset (pipeline/data/images.py, the prepare stage).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pipeline.artifacts.manifest import DOMAINS, LABEL_DIRS
from pipeline.data.images import sources
from pipeline.data.registry import DatasetSpec
from pipeline.errors import StageError

LABELS_FILE = "labels.json"  # a local folder's classes: {"classes": [names], "palette": [[r, g, b], ...]}


def with_labels(root: Path, spec: DatasetSpec) -> DatasetSpec:
    """A local folder's optional labels for the FCN-score: labels.json gives the classes and their colours;
    the class-id maps are trainB_labels/ + testB_labels/ (one channel, named as the photos), or, for
    aligned A|B pairs whose A side is a colour label map, derived from A by nearest palette colour."""
    meta = root / LABELS_FILE
    has_dirs = [(root / d).is_dir() for d in LABEL_DIRS.values()]
    if not meta.exists():
        if any(has_dirs):
            raise StageError(f"{root}: {' and '.join(LABEL_DIRS.values())} need {meta} naming the classes: "
                             '{"classes": ["road", ...], "palette": [[128, 64, 128], ...]} (id i = classes[i])')
        return spec
    try:
        info = json.loads(meta.read_text())
        classes = tuple((str(n), tuple(int(v) for v in c)) for n, c in zip(info["classes"], info["palette"], strict=True))
        if not classes or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for _, c in classes):
            raise ValueError("one [r, g, b] in 0..255 per class, at least one class")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StageError(f"{meta}: expected {{\"classes\": [names], \"palette\": [[r, g, b], ...]}} of equal "
                         f"length ({type(e).__name__}: {e})") from None
    if any(has_dirs) and not all(has_dirs):
        raise StageError(f"{root}: class-id maps need both {' and '.join(LABEL_DIRS.values())}")
    if not any(has_dirs) and spec.layout != "aligned":
        raise StageError(f"{root}: {meta.name} without {' and '.join(LABEL_DIRS.values())}: an unaligned folder has no "
                         f"A label map beside each photo; add the class-id maps or remove {meta.name}")
    return dataclasses.replace(spec, label_classes=classes)


def check_layout(root: Path, spec: DatasetSpec) -> Path:
    """The user's folder, checked for the layout data.local.layout names before any work."""
    if not root.is_dir():
        raise StageError(f"{root}: data.local.path is not a folder; put your images there (docs/own-data.md) or "
                         f"point data.local.path at them")
    need = DOMAINS if spec.layout == "unaligned" else ("train", spec.test_split)
    missing = [d + "/" for d in need if not (root / d).is_dir()]
    if missing:
        other = ("aligned: train/ and test/ of side-by-side A|B images" if spec.layout == "unaligned"
                 else "unaligned: trainA/ trainB/ testA/ testB/")
        raise StageError(f"{root}: missing {', '.join(missing)} for data.local.layout={spec.layout}; add them, or set "
                         f"data.local.layout to the folder's layout ({other})")
    empty = [d + "/" for d in need if not sources(root / d)]
    if empty:
        raise StageError(f"{root}: {', '.join(empty)} empty; every folder of the layout needs images")
    return root
