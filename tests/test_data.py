"""Data sources decode to the same uint8 tensors, cache on disk, and fail with clear messages."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import kdcore.data as data
from kdcore.data import (
    CIFAR10_CLASSES,
    DataError,
    ImageSet,
    load_split,
    source_status,
    synthetic_split,
)


def make_archive(folder: Path, name: str = "images.tar.gz") -> Path:
    archive = folder.parent / name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def decode(*args, **kwargs):
        raise AssertionError("the source was decoded again instead of read from the cache")

    monkeypatch.setattr(data, "_decode_source", decode)


# --- synthetic ----------------------------------------------------------------------------------


def test_synthetic_splits_have_the_documented_shape_and_ten_balanced_classes(
    synthetic_train, synthetic_test
):
    train, test = synthetic_train, synthetic_test
    assert train.images.shape == (4000, 3, 32, 32) and test.images.shape == (1000, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert len(train.classes) == 10
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10


def test_synthetic_split_is_deterministic_and_train_differs_from_test(synthetic_test):
    first, again = synthetic_split("test"), load_split("synthetic", "test")
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert torch.equal(first.images, synthetic_test.images)
    assert not torch.equal(synthetic_split("train", per_class=100).images, first.images)


def test_unknown_split_is_refused():
    with pytest.raises(DataError, match="Unknown split"):
        load_split("synthetic", "validation")


# --- folders and archives -----------------------------------------------------------------------


def test_folder_labels_follow_sorted_class_names(image_folder, folder_layout):
    train = load_split(str(image_folder), "train")
    assert train.classes == ("ant", "mouse", "zebra")
    assert train.labels.tolist() == [0, 1, 1, 2, 2]
    assert train.images.shape == (5, 3, 32, 32) and train.images.dtype == torch.uint8
    # files sorted by name within a class: zebra/a.jpg then zebra/b.png (a lossless PNG)
    b_png = train.images[4]
    assert b_png[:, 0, 0].tolist() == [10, 20, 30]
    assert b_png[:, 2, 1].tolist() == [255, 255, 255]  # putpixel((x=1, y=2))
    test = load_split(str(image_folder), "test")
    assert test.classes == train.classes and test.labels.tolist() == [0, 1, 2]


def test_folder_image_of_another_size_is_resized_to_32(image_folder):
    train = load_split(str(image_folder), "train")
    with Image.open(image_folder / "train" / "ant" / "x.png") as image:
        assert image.size == (40, 24)
        expected = np.array(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    assert torch.equal(train.images[0], torch.from_numpy(expected).permute(2, 0, 1))


def test_archive_of_a_folder_gives_identical_tensors(image_folder):
    archive = make_archive(image_folder)
    for split in ("train", "test"):
        from_folder = load_split(str(image_folder), split)
        from_archive = load_split(str(archive), split)
        assert from_archive.classes == from_folder.classes
        assert torch.equal(from_archive.images, from_folder.images)
        assert torch.equal(from_archive.labels, from_folder.labels)


def test_undecodable_image_names_the_file(image_folder):
    (image_folder / "train" / "ant" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="train/ant/broken.png is not an image"):
        load_split(str(image_folder), "train")


def test_damaged_archive_is_a_data_error(tmp_path):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(DataError, match="Cannot read archive"):
        load_split(str(archive), "train")


def test_missing_folder_is_a_clear_data_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist"):
        load_split(str(missing), "train")


def test_folder_in_the_wrong_layout_says_what_is_expected(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match=r"train/<class>/"):
        load_split(str(tmp_path / "flat"), "train")


# --- source_status ------------------------------------------------------------------------------


def test_source_status_for_each_kind(image_folder, tmp_path):
    assert source_status("synthetic").kind == "synthetic" and source_status("synthetic").ready

    folder = source_status(str(image_folder))
    assert (folder.kind, folder.ready) == ("folder", True)

    missing = source_status(str(tmp_path / "nowhere"))
    assert (missing.kind, missing.ready) == ("folder", False)
    assert "does not exist" in missing.message

    archive = source_status(str(make_archive(image_folder)))
    assert (archive.kind, archive.ready) == ("archive", True)

    no_archive = source_status(str(tmp_path / "absent.tar.gz"))
    assert (no_archive.kind, no_archive.ready) == ("archive", False)
    assert "does not exist" in no_archive.message
    # pages go on after the message with a sentence of their own
    for status in (source_status("synthetic"), folder, missing, archive, no_archive):
        assert status.message.endswith("."), status.message


def test_source_status_of_cifar10_before_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = source_status("cifar10")
    assert (status.kind, status.ready) == ("cifar10", False)
    assert "not downloaded" in status.message


# --- disk cache ---------------------------------------------------------------------------------


def test_second_load_reads_the_disk_cache(image_folder, tmp_path, monkeypatch):
    cache = tmp_path / "split-cache"
    first = load_split(str(image_folder), "train", cache_dir=cache)
    assert len(list((cache / "splits").glob("*-train.pt"))) == 1
    forbid_decoding(monkeypatch)
    second = load_split(str(image_folder), "train", cache_dir=cache)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.classes == first.classes


def test_a_copied_archive_keeps_its_caches_and_an_edited_one_does_not(
    image_folder, tmp_path, monkeypatch
):
    archive = make_archive(image_folder)
    cache = tmp_path / "split-cache"
    first = load_split(str(archive), "train", cache_dir=cache)
    copy = tmp_path / "elsewhere" / "copy.tar.gz"
    copy.parent.mkdir()
    shutil.copyfile(archive, copy)  # a new path and a new modification time, the same bytes
    os.utime(copy, ns=(archive.stat().st_mtime_ns + 10**9,) * 2)
    assert data.source_fingerprint(str(copy)) == data.source_fingerprint(str(archive))
    with monkeypatch.context() as patch:
        forbid_decoding(patch)
        second = load_split(str(copy), "train", cache_dir=cache)
    assert torch.equal(first.images, second.images)

    next(p for p in sorted((image_folder / "train").rglob("*")) if p.is_file()).unlink()
    shutil.move(make_archive(image_folder, "edited.tar.gz"), copy)  # at the copy's path, one fewer
    assert data.source_fingerprint(str(copy)) != data.source_fingerprint(str(archive))


def test_an_archive_over_the_digest_limit_is_known_by_its_path_size_and_time(
    image_folder, monkeypatch
):
    archive = make_archive(image_folder)
    monkeypatch.setattr(data, "ARCHIVE_DIGEST_MAX_BYTES", archive.stat().st_size - 1)
    monkeypatch.setattr(data, "file_digest", lambda *a: pytest.fail("a large archive was hashed"))
    before = data.source_fingerprint(str(archive))
    os.utime(archive, ns=(archive.stat().st_mtime_ns + 10**9,) * 2)
    assert data.source_fingerprint(str(archive)) != before


def test_default_cache_lives_in_kdcore_cache(image_folder, private_cache):
    load_split(str(image_folder), "test")
    assert len(list((private_cache / "splits").glob("*-test.pt"))) == 1


def test_corrupt_cache_file_is_rebuilt(image_folder, tmp_path):
    cache = tmp_path / "split-cache"
    first = load_split(str(image_folder), "train", cache_dir=cache)
    (cache_file,) = (cache / "splits").glob("*-train.pt")
    cache_file.write_bytes(b"garbage" * 10)
    rebuilt = load_split(str(image_folder), "train", cache_dir=cache)
    assert torch.equal(rebuilt.images, first.images)
    payload = torch.load(cache_file, weights_only=True)
    assert torch.equal(payload["images"], first.images)


def test_cache_with_unexpected_tensors_is_rebuilt(image_folder, tmp_path):
    cache = tmp_path / "split-cache"
    first = load_split(str(image_folder), "train", cache_dir=cache)
    (cache_file,) = (cache / "splits").glob("*-train.pt")
    torch.save(
        {"images": torch.zeros(2, 3, 8, 8), "labels": torch.zeros(2), "classes": []}, cache_file
    )
    assert torch.equal(load_split(str(image_folder), "train", cache_dir=cache).images, first.images)


# --- torchvision CIFAR-10 -----------------------------------------------------------------------


def test_cifar10_offline_is_a_clear_data_error(tmp_path, monkeypatch):
    class OfflineCIFAR10:
        def __init__(self, *args, **kwargs):
            raise URLError("Temporary failure in name resolution")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(DataError) as caught:
        load_split("cifar10", "train")
    message = str(caught.value)
    assert "could not be downloaded" in message
    assert "cifar-10-python.tar.gz" in message and "synthetic" in message


def write_cifar10_root(root: Path, per_batch: int = 3, test_size: int = 4) -> dict:
    """A tiny `cifar-10-batches-py` in the real pickle format; returns what it wrote."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {"train": ([], []), "test": ([], [])}

    def dump(name: str, size: int, split: str) -> None:
        pixels = rng.integers(0, 256, (size, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size).tolist()
        entry = {"batch_label": name, "labels": labels, "data": pixels,
                 "filenames": [f"{name}_{i}.png" for i in range(size)]}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(entry))
        written[split][0].append(pixels)
        written[split][1].extend(labels)

    for k in range(1, 6):
        dump(f"data_batch_{k}", per_batch, "train")
    dump("test_batch", test_size, "test")
    meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return {split: (np.concatenate(p), labels) for split, (p, labels) in written.items()}


def test_local_cifar10_root_loads_through_torchvision(tmp_path, monkeypatch):
    from torchvision.datasets import cifar

    # the tiny files cannot match the real md5 sums torchvision checks
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    root = tmp_path / "cifar"
    written = write_cifar10_root(root)
    assert source_status(str(root)).kind == "cifar10" and source_status(str(root)).ready
    for split, size in (("train", 15), ("test", 4)):
        loaded = load_split(str(root), split)
        pixels, labels = written[split]
        assert loaded.images.shape == (size, 3, 32, 32) and loaded.images.dtype == torch.uint8
        assert torch.equal(loaded.images, torch.from_numpy(pixels).reshape(-1, 3, 32, 32))
        assert loaded.labels.tolist() == labels
        assert loaded.classes == CIFAR10_CLASSES


# --- subsets ------------------------------------------------------------------------------------


def indexed_set(n: int = 200) -> ImageSet:
    """Image i is filled with i and labelled i, so a subset shows which images it kept."""
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 32, 32).clone()
    return ImageSet(images, torch.arange(n), tuple(str(k) for k in range(10)))


def test_subset_is_seeded_deterministic_and_keeps_pairs():
    full = indexed_set()
    first, again, other = full.subset(50, seed=1), full.subset(50, seed=1), full.subset(50, seed=2)
    assert len(first) == 50
    assert torch.equal(first.labels, again.labels)
    assert not torch.equal(first.labels, other.labels)
    assert len(set(first.labels.tolist())) == 50
    assert torch.all(first.images[:, 0, 0, 0].long() == first.labels)
    assert first.classes == full.classes


def test_validation_split_is_disjoint_deterministic_and_keeps_pairs():
    index = torch.arange(1000)
    images = torch.zeros(1000, 3, 32, 32, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = index % 256, index // 256  # image k encodes k
    data = ImageSet(images, index.clone(), tuple("abcdefghij"))  # label k for image k
    rest, val = data.split_off(100)
    assert (len(rest), len(val)) == (900, 100)
    assert set(rest.labels.tolist()).isdisjoint(val.labels.tolist())
    assert set(rest.labels.tolist()) | set(val.labels.tolist()) == set(range(1000))
    for part in (rest, val):
        decoded = part.images[:, 0, 0, 0].long() + 256 * part.images[:, 0, 0, 1].long()
        assert torch.equal(decoded, part.labels)  # every image kept its own label
    rest_again, val_again = data.split_off(100)
    assert torch.equal(val.labels, val_again.labels) and torch.equal(rest.labels, rest_again.labels)


def test_validation_split_indices_do_not_depend_on_a_run_seed():
    data = synthetic_split("train")
    _, first = data.split_off(500)
    torch.manual_seed(123)  # the global generator is not used
    _, second = data.split_off(500)
    assert torch.equal(first.images, second.images)


def test_validation_split_of_zero_is_empty_and_too_large_is_refused():
    data = synthetic_split("test")
    rest, val = data.split_off(0)
    assert rest is data and len(val) == 0
    with pytest.raises(DataError, match="must leave training images"):
        data.split_off(len(data))


def test_subset_of_none_or_more_is_everything_and_zero_is_refused():
    full = indexed_set(20)
    assert full.subset(None) is full and full.subset(20) is full and full.subset(99) is full
    with pytest.raises(DataError, match="at least one image"):
        full.subset(0)


def test_folder_cache_is_rebuilt_when_an_image_is_added(
    image_folder, folder_layout, make_image_bytes
):
    before = load_split(str(image_folder), "train")
    (image_folder / "train" / "ant" / "y.png").write_bytes(
        make_image_bytes((1, 2, 3), (32, 32), "PNG")
    )
    after = load_split(str(image_folder), "train")
    assert len(after) == len(before) + 1
    assert after.labels.tolist().count(0) == len(folder_layout["train"]["ant"]) + 1
