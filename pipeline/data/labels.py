"""Class-id label maps: the id that means "no label", and colour label maps read as class ids."""

from __future__ import annotations

import numpy as np

IGNORE = 255  # the class id of unlabeled pixels: left out of every score


def nearest_palette(image: np.ndarray, palette: np.ndarray, max_distance: float | None = None) -> np.ndarray:
    """Colour label map (H, W, 3) uint8 -> class ids: each pixel takes the nearest palette colour;
    with max_distance, pixels farther than that (RGB Euclidean) from every colour become IGNORE."""
    d = ((image[..., None, :].astype(np.int32) - palette[None, None].astype(np.int32)) ** 2).sum(-1)
    ids = d.argmin(-1).astype(np.uint8)
    if max_distance is not None:
        ids[d.min(-1) > max_distance ** 2] = IGNORE
    return ids
