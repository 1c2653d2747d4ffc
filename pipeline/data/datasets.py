"""Torch datasets over data/prepared, with augmentation that is a pure function of
(seed, epoch, index): the data a step sees never depends on what ran before it, so a run resumed
mid-epoch sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pipeline.errors import StageError


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.png"))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [-1, 1], the generators' tanh range."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


def to_image(t: torch.Tensor) -> np.ndarray:
    """Tensor (3, H, W) in [-1, 1] -> uint8 (H, W, 3)."""
    a = ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return a.permute(1, 2, 0).cpu().numpy()


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1], the range of every network here."""
    return images_uint8.float() / 127.5 - 1


def grid(rows: list[torch.Tensor], titles: list[str] | None = None, pad: int = 2) -> np.ndarray:
    """Rows of images (each a stack (k, 3, H, W)) -> one uint8 picture with white gutters, under a
    header naming each column when `titles` are given (e.g. input | translation | reconstruction)."""
    h, w = rows[0].shape[-2:]
    k = max(r.shape[0] for r in rows)
    if titles is not None and len(titles) != k:
        raise ValueError(f"{len(titles)} titles for {k} columns")
    font, size = _fitting_font(titles, w) if titles else (None, 0)
    top = size + 6 if font else 0
    out = np.full((top + len(rows) * (h + pad) + pad, k * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = top + pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = to_image(img)
    if not font:
        return out
    from PIL import ImageDraw

    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    for j, title in enumerate(titles):
        draw.text((pad + j * (w + pad) + w / 2, top / 2), title, fill=(0, 0, 0), font=font, anchor="mm")
    return np.asarray(picture)


def _fitting_font(titles: list[str], width: int):
    """Pillow's built-in font at the largest size (7-14 px) at which every title fits a column."""
    from PIL import ImageFont

    for size in range(14, 6, -1):
        font = ImageFont.load_default(size=size)
        if all(font.getlength(t) <= width - 2 for t in titles):
            return font, size
    return font, size


def load_uint8(paths: list[Path], size: int | None = None, labels: bool = False) -> torch.Tensor:
    """Images -> uint8 (N, 3, H, W), or class-id maps -> uint8 (N, H, W) when `labels`; resized to
    size x size if given (bicubic for images, nearest for ids)."""
    arrays = []
    for p in paths:
        with Image.open(p) as img:
            img = img if labels else img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.NEAREST if labels else Image.BICUBIC)
            arrays.append(np.asarray(img))
    t = torch.from_numpy(np.stack(arrays))
    return t if labels else t.permute(0, 3, 1, 2).contiguous()


def load_tensor(path: Path) -> torch.Tensor:
    with Image.open(path) as img:
        return to_tensor(img)


def _rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """Stream 0 orders the epoch (index unused); streams 1, 2 augment item `index`."""
    return np.random.default_rng([seed, epoch, index, stream])


def augment_params(rng: np.random.Generator, size: int, crop: int, flip: bool) -> tuple[int, int, bool]:
    """Random crop offset and flip (the authors' 'resize_and_crop' + flip, resize done in prepare)."""
    top = int(rng.integers(0, size - crop + 1))
    left = int(rng.integers(0, size - crop + 1))
    return top, left, bool(flip and rng.random() < 0.5)


def apply_augment(x: torch.Tensor, top: int, left: int, flipped: bool, crop: int) -> torch.Tensor:
    x = x[:, top:top + crop, left:left + crop]
    return x.flip(-1) if flipped else x


class UnalignedDataset(Dataset):
    """CycleGAN training data: an image of A and an unrelated image of B per item.

    An epoch has max(|A|, |B|) items, as in the authors' code; both domains are visited in a fresh
    random order every epoch.
    """

    def __init__(self, dir_a: Path, dir_b: Path, *, crop: int, flip: bool, seed: int):
        self.a, self.b = list_images(dir_a), list_images(dir_b)
        if not self.a or not self.b:
            raise StageError(f"no images in {dir_a if not self.a else dir_b}; check data/prepared (dvc repro prepare)")
        self.crop, self.flip, self.seed = crop, flip, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        rng = _rng(self.seed, epoch, 0, 0)
        self.order_a, self.order_b = rng.permutation(len(self.a)), rng.permutation(len(self.b))

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def _item(self, path: Path, index: int, stream: int) -> torch.Tensor:
        x = load_tensor(path)
        top, left, flipped = augment_params(_rng(self.seed, self.epoch, index, stream), x.shape[-1], self.crop, self.flip)
        return apply_augment(x, top, left, flipped, self.crop)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a = self.a[self.order_a[i % len(self.a)]]
        b = self.b[self.order_b[i % len(self.b)]]
        return {"A": self._item(a, i, 1), "B": self._item(b, i, 2)}


class ItemDataset(Dataset):
    """Training data as a list of items in a fresh random order every epoch; item i of an epoch is
    cropped and flipped by the draws of stream 1 (every image of an item alike)."""

    def __init__(self, items: list, *, crop: int, flip: bool, seed: int):
        self.items = items
        self.crop, self.flip, self.seed = crop, flip, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = _rng(self.seed, epoch, 0, 0).permutation(len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def augmented(self, i: int, *images: torch.Tensor) -> list[torch.Tensor]:
        top, left, flipped = augment_params(_rng(self.seed, self.epoch, i, 1), images[0].shape[-1], self.crop, self.flip)
        return [apply_augment(x, top, left, flipped, self.crop) for x in images]


class AlignedDataset(ItemDataset):
    """pix2pix training data: (A, B) pairs matched by file name, augmented identically."""

    def __init__(self, dir_a: Path, dir_b: Path, *, crop: int, flip: bool, seed: int):
        names_a = {p.name for p in list_images(dir_a)}
        names_b = {p.name for p in list_images(dir_b)}
        names = sorted(names_a & names_b)
        if not names:
            raise StageError(f"no pairs: {dir_a} and {dir_b} share no file names; a paired model needs a paired dataset")
        super().__init__([(Path(dir_a) / n, Path(dir_b) / n) for n in names], crop=crop, flip=flip, seed=seed)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pa, pb = self.items[self.order[i]]
        a, b = self.augmented(i, load_tensor(pa), load_tensor(pb))
        return {"A": a, "B": b}


class MultiDomainDataset(ItemDataset):
    """StarGAN training data: the images of every domain's training folder, each with its domain index
    (the folders' order: A = 0, B = 1, ...), in a fresh random order every epoch (the authors' loader
    over RaFD's domain folders)."""

    def __init__(self, dirs: list[Path], *, crop: int, flip: bool, seed: int):
        empty = [str(f) for f in dirs if not list_images(f)]
        if empty:
            raise StageError(f"no images in {', '.join(empty)}; check data/prepared (dvc repro prepare)")
        super().__init__([(p, d) for d, folder in enumerate(dirs) for p in list_images(folder)], crop=crop, flip=flip,
                         seed=seed)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path, domain = self.items[self.order[i]]
        (x,) = self.augmented(i, load_tensor(path))
        return {"image": x, "domain": torch.tensor(domain)}


def batches(n_items: int, batch_size: int, drop_last: bool = False) -> list[list[int]]:
    """Item indices of each step of one epoch; the last batch may be smaller, or with `drop_last` is
    skipped when it is (the authors' loop, for a model that needs full batches)."""
    end = n_items - n_items % batch_size if drop_last else n_items
    return [list(range(s, min(s + batch_size, n_items))) for s in range(0, end, batch_size)]
