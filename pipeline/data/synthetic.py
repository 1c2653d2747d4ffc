"""The embedded dataset: a procedural street world in the spirit of Cityscapes labels <-> photos.

Domain A is a colour-coded semantic label map; domain B is a "photo" rendered from a label map with
per-class texture, per-scene lighting and sensor noise. Everything is a pure function of a seed.

- Training scenes of A and of B are drawn from different seeds (truly unpaired, as CycleGAN needs).
- Test scenes are paired: testA/i.png is the label map of testB/i.png, so distances to ground
  truth are exact.
- Every photo has its class-id map (trainB_labels/, testB_labels/), so a segmenter can be trained
  on real photos for the FCN-score, and `paired_trainA/` holds the colour label maps of the trainB
  scenes for the paired baseline (pix2pix).

The photo is a deterministic function of the label map plus nuisance (lighting, colours of object
instances, noise), so a translator that follows its input can match the ground truth far better
than one that ignores it (tests/test_synthetic.py checks this).

The multi-domain world (registry `synthetic_multi`, for StarGAN) renders the same scenes as k = 4
domains: the colour label map and the photo under three conditions (CONDITIONS: day, dusk, fog).
Each domain's training scenes are its own (unpaired); the test scenes are shared by every domain
(paired: testX/i.png of every domain X shows scene i), and every photo has its class-id map. Its
label and day domains are the two-domain world's A and B, scene for scene.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.registry import dataset_spec

# (name, palette colour) per class id; colours follow the Cityscapes palette.
CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("sky", (70, 130, 180)),
    ("building", (70, 70, 70)),
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("vegetation", (107, 142, 35)),
    ("vehicle", (0, 0, 142)),
)
PALETTE = np.array([c for _, c in CLASSES], dtype=np.uint8)
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, VEHICLE = range(len(CLASSES))


def colorize(labels: np.ndarray) -> np.ndarray:
    """Class ids (H, W) -> palette colour image (H, W, 3) uint8."""
    return PALETTE[labels]


def scene_layout(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random street scene as a class-id map (H, W) uint8."""
    h = w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    labels = np.full((h, w), SKY, dtype=np.uint8)
    horizon = rng.uniform(0.35, 0.55) * h

    # Buildings: a row of blocks standing on the horizon, with random heights and gaps.
    x = rng.uniform(-0.1, 0.1) * w
    while x < w:
        bw = rng.uniform(0.12, 0.3) * w
        if rng.random() < 0.85:
            top = horizon - rng.uniform(0.1, 0.33) * h
            labels[(xs >= x) & (xs < x + bw) & (ys >= top) & (ys < horizon + 2)] = BUILDING
        x += bw + rng.uniform(0.0, 0.06) * w

    # Ground: grass everywhere below the horizon, a road converging to a vanishing point,
    # sidewalks along both road edges.
    below = ys >= horizon
    labels[below] = VEGETATION
    vx = rng.uniform(0.3, 0.7) * w
    depth = np.clip((ys - horizon) / (h - horizon), 0.0, None)
    half_road = depth * rng.uniform(0.45, 0.8) * w + 0.5
    half_walk = half_road * rng.uniform(1.2, 1.45) + 0.5
    labels[below & (np.abs(xs - vx) < half_walk)] = SIDEWALK
    labels[below & (np.abs(xs - vx) < half_road)] = ROAD

    # Trees: round crowns rising from the verges.
    for _ in range(rng.integers(0, 4)):
        cx = rng.uniform(0, w)
        cy = horizon - rng.uniform(0.0, 0.12) * h
        r = rng.uniform(0.06, 0.14) * w
        labels[(xs - cx) ** 2 + (ys - cy) ** 2 < r ** 2] = VEGETATION

    # Vehicles on the road, bigger when closer (perspective).
    for _ in range(rng.integers(0, 4)):
        d = rng.uniform(0.15, 0.95)
        cy = horizon + d * (h - horizon)
        half = d * rng.uniform(0.45, 0.8) * w * 0.5
        cx = vx + rng.uniform(-1.0, 1.0) * half
        vw, vh = d * 0.32 * w + 2, d * 0.2 * h + 2
        labels[(np.abs(xs - cx) < vw / 2) & (ys < cy) & (ys >= cy - vh)] = VEHICLE
    return labels


def render_photo(labels: np.ndarray, rng: np.random.Generator, condition: str = "day") -> np.ndarray:
    """Render a label map into a photo (H, W, 3) uint8: per-class texture, the `condition`'s look
    (CONDITIONS), lighting and noise. The look draws no random numbers, so every condition of a scene
    shares its colours, lighting and noise, and the day photo is the two-domain world's photo."""
    h, w = labels.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xs / w, ys / h
    img = np.zeros((h, w, 3), np.float32)
    cell = max(2, w // 16)  # texture period in pixels, scaled with resolution

    def paint(cls: int, rgb: np.ndarray) -> None:
        m = labels == cls
        img[m] = rgb[m] if rgb.ndim == 3 else rgb

    # Sky: vertical gradient from blue to pale near the horizon.
    sky_top = np.array([0.35, 0.55, 0.9]) + rng.uniform(-0.05, 0.05, 3)
    paint(SKY, sky_top + (np.array([0.85, 0.9, 0.95]) - sky_top) * v[..., None] * 1.6)
    # Buildings: a facade colour with a grid of dark windows.
    facade = rng.uniform([0.45, 0.35, 0.3], [0.75, 0.65, 0.6])
    windows = ((xs % cell) < cell / 2) & ((ys % cell) < cell / 2)
    paint(BUILDING, np.where(windows[..., None], facade * 0.35, facade))
    # Road: dark asphalt with fine grain.
    asphalt = np.full((h, w, 3), 0.25, np.float32) + rng.normal(0, 0.03, (h, w, 1))
    paint(ROAD, asphalt)
    # Sidewalk: light paving with tile seams.
    seams = ((xs % cell) < 1) | ((ys % cell) < 1)
    paint(SIDEWALK, np.where(seams[..., None], 0.55, 0.72) * np.ones(3))
    # Vegetation: green with strong leaf noise.
    leaf = np.array([0.2, 0.5, 0.15]) * (1 + rng.normal(0, 0.25, (h, w, 1)))
    paint(VEGETATION, leaf)
    # Vehicles: one bright car paint per scene (red, blue, yellow or white), never road-dark.
    paints = np.array([[0.85, 0.1, 0.1], [0.15, 0.3, 0.9], [0.95, 0.8, 0.1], [0.92, 0.92, 0.92]])
    body = paints[rng.integers(len(paints))] * rng.uniform(0.8, 1.0)
    paint(VEHICLE, body * np.ones((h, w, 3)))
    img = CONDITIONS[condition](img, labels, v, windows)

    # Lighting: global exposure and a left-right sun gradient; then sensor noise.
    exposure = rng.uniform(0.85, 1.15)
    sun = 1 + rng.uniform(-0.15, 0.15) * (u - 0.5)
    img = img * exposure * sun[..., None] + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def day(img: np.ndarray, labels: np.ndarray, v: np.ndarray, windows: np.ndarray) -> np.ndarray:
    return img


def dusk(img: np.ndarray, labels: np.ndarray, v: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Low warm light, an orange-to-violet sky, lit windows."""
    out = img * np.array([0.5, 0.4, 0.35])
    sky = np.array([0.25, 0.15, 0.4]) + (np.array([0.95, 0.5, 0.2]) - np.array([0.25, 0.15, 0.4])) * \
        np.clip(v * 2.0, 0, 1)[..., None]
    out[labels == SKY] = sky[labels == SKY]
    out[(labels == BUILDING) & windows] = (1.0, 0.85, 0.4)
    return out


def fog(img: np.ndarray, labels: np.ndarray, v: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Grey haze, densest far away (high in the picture), thinnest at the bottom."""
    density = np.clip(0.9 - 0.75 * v, 0.2, 0.9)[..., None]
    return img * (1 - density) + 0.75 * density


# The photo domains of the multi-domain world (registry `synthetic_multi`): one look per condition.
CONDITIONS = {"day": day, "dusk": dusk, "fog": fog}
# Its domains, in the default order: the colour label map, then the photo conditions.
MULTI_DOMAINS = ("label", *CONDITIONS)
# The scenes of each domain's training set: label and day are the two-domain world's trainA and trainB.
TRAIN_SPLITS = {"label": "trainA", "day": "trainB", "dusk": "train_dusk", "fog": "train_fog"}


def make_scene(seed: int, size: int, condition: str = "day") -> tuple[np.ndarray, np.ndarray]:
    """(class ids, photo under `condition`) of the scene with this seed."""
    rng = np.random.default_rng(seed)
    labels = scene_layout(rng, size)
    return labels, render_photo(labels, rng, condition)


# Seed offsets keep the scene sets disjoint: trainA, trainB and test never share a scene; the
# multi-domain world's dusk and fog training photos have scene sets of their own.
SPLIT_OFFSETS = {"trainA": 0, "trainB": 1_000_000, "test": 2_000_000, "train_dusk": 3_000_000,
                 "train_fog": 4_000_000}


def scene_seed(base_seed: int, split: str, index: int) -> int:
    return base_seed * 10_000_000 + SPLIT_OFFSETS[split] + index


def domain_count(data) -> int:
    """How many domains the prepared data of params' data section will have: data.domains of the
    multi-domain world (all of them when null), else the two domains A and B."""
    if dataset_spec(data).layout == "synthetic_multi":
        return len(data.domains or MULTI_DOMAINS)
    return 2
