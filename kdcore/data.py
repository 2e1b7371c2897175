"""Data sources -> uint8 tensors in memory, cached on disk after the first decode.

A source is named by one string, the same in the CLI, the dashboard and a run's config:
- `synthetic`: a small generated 10-class set a CNN can learn (offline demos and tests);
- a folder in the `train/<class>/`, `test/<class>/` layout, or a `.tar.gz` / `.tar` of one;
- a torchvision CIFAR-10 root (holding `cifar-10-batches-py`), or `cifar10` for `data/cifar10`,
  downloaded there when missing and online.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from kdcore.checkpoints import atomic_torch_save
from kdcore.files import atomic_write_text, file_digest
from kdcore.inference import MAX_IMAGE_BYTES, ImageDecodeError, open_image

SYNTHETIC = "synthetic"
CIFAR10 = "cifar10"
DEFAULT_CIFAR10_ROOT = Path("data/cifar10")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SYNTHETIC_CLASSES = tuple(f"pattern{k}" for k in range(10))
SYNTHETIC_SIZES = {"train": 4000, "test": 1000}
CIFAR10_SIZES = {"train": 50_000, "test": 10_000}
IMAGE_SIZE = 32
CACHE_VERSION = 1
# archives up to this size are fingerprinted by their bytes (1 GiB: about 3 s), larger ones by
# their path, size and modification time
ARCHIVE_DIGEST_MAX_BYTES = 1 << 30
VAL_SPLIT_SEED = 20_000_000  # fixed: one validation split per data set, whatever the run


class DataError(ValueError):
    """A data source cannot be read; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class ImageSet:
    """One split in memory: `images` (N, 3, 32, 32) uint8, `labels` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, size: int | None, seed: int = 0) -> ImageSet:
        """A seeded random subset of `size` images (all of them when `size` is None or larger)."""
        if size is None or size >= len(self):
            return self
        return self._take(self.subset_indices(size, seed))

    def subset_indices(self, size: int | None, seed: int = 0) -> torch.Tensor:
        """Where `subset(size, seed)`'s images sit in this set: (size,) int64, ascending."""
        if size is None or size >= len(self):
            return torch.arange(len(self))
        if size <= 0:
            raise DataError(f"A subset needs at least one image (got {size}).")
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size]
        return keep.sort().values

    def split_off(self, size: int) -> tuple[ImageSet, ImageSet]:
        """(the rest, a held-out split of `size` images), disjoint; the same split on every call.

        The held-out images do not depend on any run's seed, so runs of different seeds are
        chosen between on the same validation images. `size` 0 gives (self, an empty set).
        """
        if not 0 <= size < len(self):
            raise DataError(
                f"A validation split of {size} images must leave training images; "
                f"the training set holds {len(self)}."
            )
        if size == 0:
            return self, self._take(torch.zeros(0, dtype=torch.int64))
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
        held_out, rest = order[:size].sort().values, order[size:].sort().values
        return self._take(rest), self._take(held_out)

    def _take(self, indices: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.classes)


@dataclass(frozen=True)
class SourceStatus:
    kind: str  # "synthetic" | "folder" | "archive" | "cifar10"
    ready: bool
    message: str


def source_status(source: str) -> SourceStatus:
    """What a source is and whether it can be read now, without decoding anything."""
    if source == SYNTHETIC:
        return SourceStatus("synthetic", True, "Generated 10-class set, always available offline.")
    path = _cifar10_root(source) if source == CIFAR10 else Path(source).expanduser()
    if _is_archive(path):
        ok = path.is_file()
        state = "read without unpacking" if ok else "does not exist"
        return SourceStatus("archive", ok, f"Archive {path}: {state}.")
    if (path / "cifar-10-batches-py").is_dir() or source == CIFAR10:
        ok = (path / "cifar-10-batches-py").is_dir()
        note = "ready" if ok else "not downloaded yet (needs internet on first use)"
        return SourceStatus("cifar10", ok, f"torchvision CIFAR-10 at {path}: {note}.")
    if all((path / split).is_dir() for split in SPLITS):
        return SourceStatus("folder", True, f"Image folder {path} (train/ and test/).")
    return SourceStatus("folder", False, _missing_folder_message(path))


def load_split(source: str, split: str, cache_dir: str | Path | None = None) -> ImageSet:
    """Decode a split once into memory; later calls read the on-disk cache.

    >>> train = load_split("synthetic", "train")
    >>> train.images.shape[1:], train.images.dtype
    (torch.Size([3, 32, 32]), torch.uint8)
    """
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; use 'train' or 'test'.")
    if source == SYNTHETIC:
        return synthetic_split(split)
    cache_file = _cache_file(source, split, cache_dir)
    if cache_file is not None and cache_file.is_file():
        try:
            return _read_cache(cache_file)
        except Exception:  # a stale or damaged cache is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)
    image_set = _decode_source(source, split)
    if cache_file is not None:
        atomic_torch_save(
            {"images": image_set.images, "labels": image_set.labels, "classes": image_set.classes},
            cache_file,
        )
    return image_set


def default_cache_dir() -> Path:
    return Path(os.environ.get("KDCORE_CACHE", Path.home() / ".cache" / "kdcore"))


def source_fingerprint(source: str) -> str:
    """A short id that changes when the source's files change (keys caches of derived data)."""
    if source == SYNTHETIC:
        return f"synthetic-v{CACHE_VERSION}"
    path = _cifar10_root(source) if source == CIFAR10 else Path(source).expanduser().resolve()
    stat = path.stat() if path.exists() else None
    if path.is_file() and stat.st_size <= ARCHIVE_DIGEST_MAX_BYTES:
        # an archive is known by its bytes: a copy elsewhere, or with a new time, keeps its caches
        return _archive_fingerprint(str(path), stat.st_size, stat.st_mtime_ns)
    token = (
        f"{path}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}|{CACHE_VERSION}"
    )
    if path.is_dir():  # a folder's own stat misses edits inside train/<class>/: stat every file
        files = sorted(f for f in path.rglob("*") if f.is_file())
        stats = [f.stat() for f in files]
        newest = max((f.st_mtime_ns for f in stats), default=0)
        names = hashlib.sha256("\n".join(str(f.relative_to(path)) for f in files).encode())
        token += f"|{len(stats)}|{sum(f.st_size for f in stats)}|{newest}|{names.hexdigest()}"
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _archive_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """The digest of an archive's bytes, hashed once per (path, size, time) in a process."""
    return hashlib.sha256(f"{file_digest(path, 64)}|{CACHE_VERSION}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SourceListing:
    """What a source holds per split, known without decoding an image."""

    classes: dict[str, tuple[str, ...]]  # split -> sorted class names
    images: dict[str, int]  # split -> number of image files


def list_source(source: str, cache_dir: str | Path | None = None) -> SourceListing:
    """Each split's class names and image count, from the listing alone.

    An archive is listed once (it is read through) and the answer kept beside the split caches.
    """
    status = source_status(source)
    if status.kind in ("synthetic", "cifar10"):
        classes = SYNTHETIC_CLASSES if source == SYNTHETIC else CIFAR10_CLASSES
        sizes = SYNTHETIC_SIZES if source == SYNTHETIC else CIFAR10_SIZES
        return SourceListing(dict.fromkeys(SPLITS, classes), dict(sizes))
    if not status.ready:
        raise DataError(status.message)
    path = Path(source).expanduser()
    record = _cache_root(cache_dir) / "splits" / f"{source_fingerprint(source)}-listing.json"
    try:
        known = json.loads(record.read_text())
        return SourceListing(
            {split: tuple(known["classes"][split]) for split in SPLITS},
            {split: int(known["images"][split]) for split in SPLITS},
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    files = _archive_listing(path) if status.kind == "archive" else _folder_listing(path)
    listing = SourceListing(
        {split: tuple(sorted({c for s, c, _ in files if s == split})) for split in SPLITS},
        {split: sum(1 for s, _, _ in files if s == split) for split in SPLITS},
    )
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"classes": listing.classes, "images": listing.images}))
    return listing


def source_classes(source: str, cache_dir: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Each split's class names, from the listing alone: no image is decoded."""
    return list_source(source, cache_dir).classes


def same_source(first: str, second: str) -> bool:
    """Whether two source names point at the same data (`./x` and `/abs/x` do)."""
    if first == second:
        return True
    return Path(first).expanduser().resolve() == Path(second).expanduser().resolve()


def require_same_classes(
    expected: Sequence[str], got: Sequence[str], expected_name: str, got_name: str
) -> None:
    """DataError, naming both lists, unless the two class lists are the same, in the same order
    (a label is an index into them)."""
    if tuple(expected) != tuple(got):
        raise DataError(
            f"The classes do not match: {expected_name} has {_class_list(expected)}, "
            f"{got_name} has {_class_list(got)}."
        )


def _class_list(names: Sequence[str], shown: int = 12) -> str:
    listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    return f"{len(names)} ({listed})"


# --- synthetic ----------------------------------------------------------------------------------


def synthetic_split(split: str, per_class: int | None = None) -> ImageSet:
    """Ten classes of noisy striped patches: the class sets stripe colour, direction and period.

    The patterns survive crops and mirror flips, so the study's augmentation keeps labels true.
    Deterministic: the same split always gives the same images.
    """
    per_class = per_class or SYNTHETIC_SIZES[split] // 10
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(10).repeat_interleave(per_class)
    n = len(labels)
    palette = torch.tensor(
        [[230, 60, 60], [60, 200, 60], [70, 90, 230], [220, 200, 50], [200, 70, 200]],
        dtype=torch.float32,
    )
    colours = palette[labels % 5] + torch.randn(n, 3, generator=generator) * 20
    period = (4 + 2 * (labels // 5)).float()  # (N,) 4 or 6 pixels
    phase = torch.rand(n, generator=generator) * 6.28
    grid = torch.arange(IMAGE_SIZE, dtype=torch.float32)
    vertical = (labels % 2 == 1)[:, None, None]
    coord = torch.where(vertical, grid[None, None, :], grid[None, :, None])  # (N, 32, 32)
    stripes = 0.5 + 0.5 * torch.sin(coord * 6.28 / period[:, None, None] + phase[:, None, None])
    pixels = 40 + stripes[:, None] * (colours[:, :, None, None] - 40)
    pixels += torch.randn(pixels.shape, generator=generator) * 45
    images = pixels.clamp(0, 255).to(torch.uint8)
    order = torch.randperm(n, generator=generator)
    return ImageSet(images[order].contiguous(), labels[order], SYNTHETIC_CLASSES)


# --- folders and archives -----------------------------------------------------------------------


def _decode_source(source: str, split: str) -> ImageSet:
    status = source_status(source)
    if status.kind == "cifar10":
        return _load_torchvision_cifar10(source, split)
    if not status.ready:
        raise DataError(status.message)
    path = Path(source).expanduser()
    members = (
        _archive_members(path, split) if status.kind == "archive" else _folder_members(path, split)
    )
    return _decode_members(members, path, split)


def _folder_listing(root: Path) -> list[tuple[str, str, Path]]:
    """(split, class, file) of every image in a train/<class>/, test/<class>/ folder."""
    return [
        (split, file.parent.name, file)
        for split in SPLITS
        for file in sorted((root / split).glob("*/*"))
        if file.suffix.lower() in IMAGE_SUFFIXES
    ]


def _folder_members(root: Path, split: str) -> Iterator[tuple[str, bytes]]:
    for file_split, class_name, file in _folder_listing(root):
        if file_split == split:
            name = f"{split}/{class_name}/{file.name}"
            _check_image_bytes(name, file.stat().st_size, root)
            yield name, file.read_bytes()


def _archive_images(archive: tarfile.TarFile) -> Iterator[tuple[str, str, tarfile.TarInfo]]:
    """(split, class, member) of every image member, in archive order: `.../split/class/file`."""
    for member in archive:
        parts = Path(member.name).parts
        is_image = Path(member.name).suffix.lower() in IMAGE_SUFFIXES
        if member.isfile() and is_image and len(parts) >= 3 and parts[-3] in SPLITS:
            yield parts[-3], parts[-2], member


def _archive_listing(path: Path) -> list[tuple[str, str, str]]:
    try:
        with tarfile.open(path) as archive:
            return [(split, name, member.name) for split, name, member in _archive_images(archive)]
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"Cannot read archive {path}: {error}") from error


def _archive_members(path: Path, split: str) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path) as archive:
            for member_split, class_name, member in _archive_images(archive):
                if member_split == split:
                    name = f"{split}/{class_name}/{Path(member.name).name}"
                    _check_image_bytes(name, member.size, path)  # before a byte is inflated
                    yield name, archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"Cannot read archive {path}: {error}") from error


def _check_image_bytes(name: str, size: int, source: Path) -> None:
    if size > MAX_IMAGE_BYTES:
        raise DataError(
            f"In {source}: {name} is {size / 2**20:.0f} MiB; an image in a data set may be at "
            f"most {MAX_IMAGE_BYTES / 2**20:.0f} MiB."
        )


def _decode_members(members: Iterator[tuple[str, bytes]], source: Path, split: str) -> ImageSet:
    """Decode `split/class/file` members; labels index the sorted class names."""
    by_class: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, data in members:
        _, class_name, file_name = name.split("/", 2)
        by_class.setdefault(class_name, []).append((file_name, _decode_pixels(data, name, source)))
    if not by_class:
        raise DataError(
            f"No images found in {source} ({split}); expected {split}/<class>/<image> files."
        )
    classes = tuple(sorted(by_class))
    arrays, labels = [], []
    for label, class_name in enumerate(classes):
        for _, pixels in sorted(by_class[class_name], key=lambda item: item[0]):
            arrays.append(pixels)
            labels.append(label)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64), classes)


def _decode_pixels(data: bytes, name: str, source: Path) -> np.ndarray:
    """One image file -> (32, 32, 3) uint8; refused with the upload's limits and messages."""
    try:
        with open_image(data, name) as image:
            image = image.convert("RGB")
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except ImageDecodeError as error:
        raise DataError(f"In {source}: {error}") from error
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise DataError(f"In {source}: {name} is truncated or corrupt ({error}).") from None


# --- torchvision CIFAR-10 -----------------------------------------------------------------------


def _cifar10_root(source: str) -> Path:
    return DEFAULT_CIFAR10_ROOT if source == CIFAR10 else Path(source).expanduser()


def _load_torchvision_cifar10(source: str, split: str) -> ImageSet:
    from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

    root = _cifar10_root(source)
    try:
        dataset = TorchvisionCIFAR10(str(root), train=split == "train", download=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise DataError(
            f"CIFAR-10 is not in {root} and could not be downloaded ({error}). Online, run once "
            f"`python -m kdcore data --data-dir {source}`; offline, copy cifar-10-python.tar.gz "
            f"into {root} or use a folder in the train/<class>/ test/<class>/ layout, or "
            f"--data-dir synthetic."
        ) from error
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.tensor(dataset.targets, dtype=torch.int64), CIFAR10_CLASSES)


# --- cache --------------------------------------------------------------------------------------


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def _cache_file(source: str, split: str, cache_dir: str | Path | None) -> Path | None:
    return _cache_root(cache_dir) / "splits" / f"{source_fingerprint(source)}-{split}.pt"


def _read_cache(path: Path) -> ImageSet:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    images, labels = payload["images"], payload["labels"]
    if images.dtype != torch.uint8 or images.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"Cache {path} holds unexpected tensors.")
    return ImageSet(images, labels, tuple(payload["classes"]))


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _missing_folder_message(path: Path) -> str:
    if not path.exists():
        return f"Data folder {path} does not exist."
    return (
        f"{path} is neither a train/<class>/ + test/<class>/ folder, an archive of one, nor a "
        f"torchvision CIFAR-10 root (cifar-10-batches-py/)."
    )
