"""Random-access sources: bundled digits, image folders (incl. corrupt files), synthetic, TFDS."""

import logging

import numpy as np
import pytest
from PIL import Image

from mim_jax.data import DigitsSource, FolderSource, SyntheticSource, TfdsSource, make_pipeline


@pytest.fixture(scope="module")
def digits16():
    return DigitsSource(image_size=16, interpolation="nearest", channels=3)


def test_digits_source(digits16):
    from sklearn.datasets import load_digits

    raw = load_digits()
    assert len(digits16) == 1797
    rec = digits16[5]
    assert rec["image"].shape == (16, 16, 3) and rec["image"].dtype == np.uint8
    assert rec["label"] == int(raw.target[5])
    # nearest x2 upsampling of 0..16 scaled to 0..255 is pixel replication
    ref = np.rint(raw.images[5] * 255 / 16).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    np.testing.assert_array_equal(rec["image"][..., 0], ref)
    np.testing.assert_array_equal(rec["image"][..., 0], rec["image"][..., 2])
    assert set(digits16.labels.tolist()) == set(range(10))


def test_digits_splits_and_options():
    train, test = DigitsSource(8, split="train", channels=1), DigitsSource(8, split="test")
    assert len(train) + len(test) == 1797
    assert train[0]["image"].shape == (8, 8, 1) and test[0]["image"].shape == (8, 8, 3)
    with pytest.raises(ValueError):
        DigitsSource(8, interpolation="bicubic")


def test_synthetic_source_deterministic():
    a, b, c = SyntheticSource(10, 8, seed=0), SyntheticSource(10, 8, seed=0), SyntheticSource(10, 8)
    np.testing.assert_array_equal(a[3]["image"], b[3]["image"])
    assert not np.array_equal(a[3]["image"], a[4]["image"])
    assert a[3]["image"].shape == (8, 8, 3) and a[3]["image"].dtype == np.uint8
    assert c[3]["label"] == a[3]["label"]
    assert not np.array_equal(SyntheticSource(10, 8, seed=1)[3]["image"], a[3]["image"])
    with pytest.raises(IndexError):
        a[10]


def _png(path, value, size=(10, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


@pytest.fixture
def image_tree(tmp_path):
    """root/a/{0,1,2}.png, root/b/{0,1}.png + root/b/1bad.jpg (garbage bytes), varied sizes."""
    root = tmp_path / "imgs"
    for i in range(3):
        _png(root / "a" / f"{i}.png", 10 + i, size=(10 + i, 12))
    _png(root / "b" / "0.png", 100)
    _png(root / "b" / "2.png", 102, size=(16, 9))
    (root / "b" / "1bad.jpg").write_bytes(b"\x00not a jpeg at all" * 10)
    (root / "b" / "notes.txt").write_text("ignored")
    return root


def test_folder_labelled_and_corrupt_replacement(image_tree, caplog):
    src = FolderSource(image_tree)
    assert src.class_names == ["a", "b"] and len(src) == 6
    assert src.labels.tolist() == [0, 0, 0, 1, 1, 1]
    bad = src.paths.index(str(image_tree / "b" / "1bad.jpg"))
    rec = src[0]
    assert rec["image"].shape == (10, 12, 3) and rec["image"].dtype == np.uint8
    assert rec["label"] == 0 and src.num_skipped == 0
    with caplog.at_level(logging.WARNING, logger="mim_jax.data.folder"):
        replaced = src[bad]
    # policy: the next readable record replaces the bad one, which is counted and logged
    np.testing.assert_array_equal(replaced["image"], src[bad + 1]["image"])
    assert src.num_skipped == 1 and list(src.skipped) == [str(image_tree / "b" / "1bad.jpg")]
    assert "1bad.jpg" in caplog.text
    src[bad]  # a second read does not double count
    assert src.num_skipped == 1


def test_folder_validate_drops_bad_files(image_tree):
    src = FolderSource(image_tree, channels=1, validate=True)
    assert len(src) == 5 and src.num_skipped == 1
    assert str(image_tree / "b" / "1bad.jpg") not in src.paths
    assert src[0]["image"].shape == (10, 12, 1)


def test_folder_flat_unlabelled_and_errors(tmp_path):
    for i in range(3):
        _png(tmp_path / "flat" / f"{i}.png", i)
    src = FolderSource(tmp_path / "flat")
    assert len(src) == 3 and src.class_names == [] and src[1]["label"] == -1
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        FolderSource(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        FolderSource(tmp_path / "missing")
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "x.png").write_bytes(b"garbage")
    with pytest.raises(RuntimeError):
        FolderSource(tmp_path / "allbad")[0]


def test_folder_through_pipeline_with_corrupt_file(image_tree):
    src = FolderSource(image_tree)
    it = make_pipeline(src, batch_size=3, image_size=8, seed=0, num_epochs=1)
    batches = list(it)
    assert len(batches) == 2
    assert all(b["image"].shape == (3, 8, 8, 3) for b in batches)
    assert src.num_skipped == 1  # worker_count=0: the skip is visible in this process


def test_tfds_missing_dataset_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared"):
        TfdsSource("mnist", split="train", data_dir=tmp_path)


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
    """A 6-record TFDS dataset prepared locally in array_record format (TF-free features)."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class MimJaxTinyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            )
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(6)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"image": np.full((8, 8, 3), i * 10, np.uint8), "label": i % 3}

    data_dir = tmp_path_factory.mktemp("tfds")
    MimJaxTinyImages(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def test_tfds_source_on_local_dataset(tiny_tfds_dir):
    src = TfdsSource("mim_jax_tiny_images", split="train", data_dir=tiny_tfds_dir)
    assert len(src) == 6
    recs = [src[i] for i in range(6)]
    assert all(r["image"].shape == (8, 8, 3) and r["image"].dtype == np.uint8 for r in recs)
    # TFDS may reorder records; each image still carries its own label
    assert sorted((int(r["image"][0, 0, 0]) // 10, r["label"]) for r in recs) == [
        (i, i % 3) for i in range(6)
    ]
    batches = list(make_pipeline(src, batch_size=3, image_size=8, seed=0, num_epochs=1))
    assert len(batches) == 2 and batches[0]["image"].shape == (3, 8, 8, 3)
