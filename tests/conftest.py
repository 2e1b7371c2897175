"""Shared fixtures for the kdcore tests: a private cache, tiny data, tiny teachers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from kdcore.checkpoints import save_checkpoint
from kdcore.data import ImageSet, synthetic_split
from kdcore.models import build_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own KDCORE_CACHE: nothing is written to ~/.cache."""
    cache = tmp_path / "kdcore-cache"
    monkeypatch.setenv("KDCORE_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def synthetic_train() -> ImageSet:
    return synthetic_split("train")


@pytest.fixture(scope="session")
def synthetic_test() -> ImageSet:
    return synthetic_split("test")


def write_teacher_checkpoint(path: Path, seed: int = 0, arch: str = "cifarnet") -> Path:
    """A randomly initialised 10-class teacher saved as a kdcore checkpoint."""
    torch.manual_seed(seed)
    classes = [f"pattern{k}" for k in range(10)]
    save_checkpoint(path, build_model(arch, 10), arch, classes, {"role": "teacher"})
    return path


@pytest.fixture
def make_teacher_checkpoint():
    """`make_teacher_checkpoint(path, seed=0, arch="cifarnet") -> path`."""
    return write_teacher_checkpoint


@pytest.fixture
def teacher_file(tmp_path: Path) -> Path:
    return write_teacher_checkpoint(tmp_path / "teachers" / "teacher.pt")


def image_bytes(colour: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    """An image file's bytes: a solid colour with one bright pixel so images differ."""
    image = Image.new("RGB", size, colour)
    image.putpixel((1, 2), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# class name -> list of (file name, colour, size, format); class names are not in label order on
# purpose, and one image is 40x24 so it must be resized to 32x32.
FOLDER_LAYOUT = {
    "train": {
        "zebra": [
            ("b.png", (10, 20, 30), (32, 32), "PNG"),
            ("a.jpg", (200, 10, 10), (32, 32), "JPEG"),
        ],
        "ant": [("x.png", (0, 250, 0), (40, 24), "PNG")],
        "mouse": [
            ("m.jpeg", (0, 0, 250), (32, 32), "JPEG"),
            ("n.png", (90, 90, 90), (32, 32), "PNG"),
        ],
    },
    "test": {
        "zebra": [("t1.png", (5, 5, 5), (32, 32), "PNG")],
        "ant": [("t2.png", (50, 60, 70), (32, 32), "PNG")],
        "mouse": [("t3.jpg", (120, 30, 200), (32, 32), "JPEG")],
    },
}


@pytest.fixture
def make_image_bytes():
    """`make_image_bytes(colour, size, fmt) -> bytes` of an image file."""
    return image_bytes


@pytest.fixture
def folder_layout() -> dict:
    return FOLDER_LAYOUT


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A tiny `train/<class>/`, `test/<class>/` folder of PNG and JPEG files."""
    root = tmp_path / "images"
    for split, classes in FOLDER_LAYOUT.items():
        for class_name, files in classes.items():
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for name, colour, size, fmt in files:
                (folder / name).write_bytes(image_bytes(colour, size, fmt))
    return root


@pytest.fixture
def cifar_named_folder(tmp_path: Path) -> Path:
    """A tiny image folder with CIFAR-10's class names (the study's rows need its classes)."""
    from kdcore.data import CIFAR10_CLASSES

    root = tmp_path / "cifar-like"
    for split, count in (("train", 6), ("test", 2)):
        for k, name in enumerate(CIFAR10_CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                colour = (25 * k, 40 * i % 255, 200 - 15 * k)
                Image.new("RGB", (32, 32), colour).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def fast_synthetic(monkeypatch: pytest.MonkeyPatch, synthetic_train, synthetic_test):
    """Runs on `synthetic` reuse the session's arrays and test on 200 images (speed only)."""
    import kdcore.execute

    real_load_split = kdcore.execute.load_split
    small_test = synthetic_test.subset(200, seed=0)

    def load_split(source, split, cache_dir=None):
        if source == "synthetic":
            return synthetic_train if split == "train" else small_test
        return real_load_split(source, split, cache_dir)

    monkeypatch.setattr(kdcore.execute, "load_split", load_split)
    return small_test
