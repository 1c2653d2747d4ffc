"""The datasets the pipeline knows, as a plain dict.

Official archives are those of the authors' download scripts
(junyanz/pytorch-CycleGAN-and-pix2pix, datasets/download_{cyclegan,pix2pix}_dataset.sh):

- CycleGAN sets are zips with unaligned folders trainA/ trainB/ testA/ testB/.
- pix2pix sets are tar.gz with aligned images: one file holds the pair side by side, left|right,
  in train/ val/ (test/). `a_side` says which half is our domain A, so that A -> B is always the
  direction of the paper's task (e.g. labels -> photo for cityscapes and facades, which the
  authors train with --direction BtoA).

The archives publish no checksums, so none is hard-coded: the first download records its SHA-256
(trust on first use) and later runs verify against it; params `data.sha256` pins one explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"


# Cityscapes' 19 evaluation classes (trainIds 0..18) and their colours in the label images;
# everything else (black "unlabeled" included) is ignored by the FCN-score.
CITYSCAPES_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)), ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)), ("pole", (153, 153, 153)), ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)), ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)), ("person", (220, 20, 60)), ("rider", (255, 0, 0)), ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)), ("bus", (0, 60, 100)), ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    # local: the layout comes from params data.local; synthetic_multi: k domains (params data.domains)
    layout: Literal["synthetic", "synthetic_multi", "unaligned", "aligned", "local"]
    url: str | None
    # aligned only: which half of each side-by-side image is our domain A, and the test split
    a_side: Literal["left", "right"] = "left"
    test_split: str = "test"
    # when domain A is a colour label map: its classes, so prepare can derive class-id maps of the
    # B photos (nearest palette colour; farther than label_tolerance -> ignore) for the FCN-score
    label_classes: tuple[tuple[str, tuple[int, int, int]], ...] | None = None
    label_tolerance: float = 40.0


def _cyclegan(name: str) -> DatasetSpec:
    return DatasetSpec(name, "unaligned", CYCLEGAN_URL.format(name=name))


def _pix2pix(name: str, a_side: Literal["left", "right"], test_split: str, label_classes=None) -> DatasetSpec:
    return DatasetSpec(f"{name}_pix2pix", "aligned", PIX2PIX_URL.format(name=name), a_side, test_split, label_classes)


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec("synthetic", "synthetic", None),
    # the same world as label map, day, dusk and fog photos: the multi-domain (StarGAN) set
    "synthetic_multi": DatasetSpec("synthetic_multi", "synthetic_multi", None),
    # a folder of the user's own (params data.local), laid out as the authors' repo expects
    "local": DatasetSpec("local", "local", None),
    # CycleGAN (unpaired) sets
    **{n: _cyclegan(n) for n in (
        "horse2zebra", "apple2orange", "summer2winter_yosemite", "monet2photo", "cezanne2photo",
        "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower")},
    # pix2pix (paired) sets; A = labels/map side as in the paper's tasks
    **{s.name: s for s in (
        _pix2pix("cityscapes", a_side="right", test_split="val",   # photo|labels; labels -> photo
                 label_classes=CITYSCAPES_CLASSES),
        _pix2pix("facades", a_side="right", test_split="test"),     # photo|labels; labels -> photo
        _pix2pix("maps", a_side="left", test_split="val"),          # aerial|map; aerial -> map
        _pix2pix("edges2shoes", a_side="left", test_split="val"),
        _pix2pix("edges2handbags", a_side="left", test_split="val"),
        _pix2pix("night2day", a_side="left", test_split="test"),
    )},
}


def local_spec(layout: Literal["unaligned", "aligned"], a_side: Literal["left", "right"], test_split: str) -> DatasetSpec:
    """The spec of a local folder: the same layouts as the official archives, taken from params."""
    return DatasetSpec("local", layout, None, a_side, test_split)


def dataset_spec(data) -> DatasetSpec:
    """The spec of params' data section (pipeline/config.py DataParams); a local folder's layout comes from
    data.local."""
    if data.dataset == "local":
        d = data.local
        return local_spec(d.layout, d.a_side, d.test_split)
    return DATASETS[data.dataset]

