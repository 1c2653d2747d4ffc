import numpy as np

from pipeline.data import synthetic
from pipeline.stages import download


def test_scenes_are_deterministic_from_the_seed():
    a = synthetic.make_scene(123, 48)
    b = synthetic.make_scene(123, 48)
    c = synthetic.make_scene(124, 48)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_split_seeds_never_collide():
    seeds = {synthetic.scene_seed(0, s, i) for s in synthetic.SPLIT_OFFSETS for i in range(1000)}
    assert len(seeds) == 1000 * len(synthetic.SPLIT_OFFSETS)


def test_every_class_appears_and_ids_are_valid():
    seen = np.zeros(len(synthetic.CLASSES), bool)
    for i in range(40):
        labels, photo = synthetic.make_scene(i, 64)
        assert labels.dtype == np.uint8 and labels.max() < len(synthetic.CLASSES)
        assert photo.shape == (64, 64, 3) and photo.dtype == np.uint8
        seen[np.unique(labels)] = True
    assert seen.all()


def test_the_task_is_learnable_a_translation_must_follow_its_input():
    """labels -> photo: rendering the right label map (with fresh nuisance: other lighting, paint
    and noise) lands far closer to the ground-truth photo than rendering another scene's labels."""
    follow, ignore, photos = [], [], []
    for i in range(30):
        labels, photo = synthetic.make_scene(i, 64)
        photos.append(photo.astype(float))
        other, _ = synthetic.make_scene(1000 + i, 64)
        rng = np.random.default_rng(99 + i)
        follow.append(np.abs(synthetic.render_photo(labels, rng).astype(float) - photo).mean())
        ignore.append(np.abs(synthetic.render_photo(other, rng).astype(float) - photo).mean())
    # the best input-ignoring answer: the mean test photo itself
    constant = np.abs(np.stack(photos) - np.mean(photos, 0)).mean()
    assert np.mean(follow) * 1.8 < np.mean(ignore)
    assert np.mean(follow) * 1.4 < constant


def test_photo_to_labels_is_recoverable_from_pixels():
    """photo -> labels: a nearest-class-mean colour classifier fit on some scenes labels unseen
    scenes far above chance, so the segmenter of the FCN-score has something to learn."""
    k = len(synthetic.CLASSES)
    sums, counts = np.zeros((k, 3)), np.zeros(k)
    for i in range(20):
        labels, photo = synthetic.make_scene(i, 64)
        for c in range(k):
            m = labels == c
            sums[c] += photo[m].sum(0)
            counts[c] += m.sum()
    means = sums / np.maximum(counts, 1)[:, None]
    correct = total = 0
    for i in range(100, 110):
        labels, photo = synthetic.make_scene(i, 64)
        pred = np.argmin(((photo[..., None, :].astype(float) - means) ** 2).sum(-1), -1)
        correct += (pred == labels).sum()
        total += labels.size
    assert correct / total > 0.6  # chance (majority class) is well below this


def test_generated_layout_and_pairing(make_params, tmp_path):
    p = make_params()
    folder = download.run(p.data, tmp_path / "raw", progress=False)

    def names(sub):
        return sorted(f.name for f in (folder / sub).iterdir())
    assert len(names("trainA")) == 6 and len(names("trainB")) == 5
    assert names("testA") == names("testB") == names("testB_labels")
    assert names("paired_trainA") == names("trainB") == names("trainB_labels")
    # testA is the colour label map of the same scene as testB
    from PIL import Image
    ids = np.asarray(Image.open(folder / "testB_labels" / "00000.png"))
    colour = np.asarray(Image.open(folder / "testA" / "00000.png"))
    assert np.array_equal(synthetic.colorize(ids), colour)
    # training domains come from different scenes (truly unpaired)
    a = {np.asarray(Image.open(f)).tobytes() for f in (folder / "trainA").iterdir()}
    b = {np.asarray(Image.open(f)).tobytes() for f in (folder / "paired_trainA").iterdir()}
    assert not a & b
