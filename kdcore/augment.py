"""The study's augmentation as pure batched tensor operations.

The study used torchvision's `RandomHorizontalFlip()`, `RandomCrop(32, padding=4)` (zero fill),
`ToTensor()` and `Normalize(0.5, 0.5)`. Here the same distribution is drawn for a whole epoch at
once, so the view of image `i` in epoch `e` is a pure function of `(seed, e, i)`: the teacher cache
relies on that to store one teacher output per view.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

PAD = 4
FLIP_MODES = ("random", "alternate")
FILLS = ("zero", "reflect")  # what a crop sees beyond the image: black (the study's) or its mirror
STUDY_VIEWS = (PAD, "random", "zero")  # crop padding, flips, fill: the views distillation shows
TEACHER_TTA_MODES = ("off", "flip")  # a teacher on a view: as is, or averaged with its mirror


@dataclass(frozen=True)
class EpochViews:
    """Per-image augmentation parameters for one epoch: index `i` describes image `i`."""

    offsets: torch.Tensor  # (N, 2) int64, crop origin (top, left) in the padded image, 0..2*PAD
    flips: torch.Tensor  # (N,) bool, mirror left-right

    def select(self, indices: torch.Tensor) -> EpochViews:
        return EpochViews(self.offsets[indices], self.flips[indices])

    def to(self, device: torch.device | str) -> EpochViews:
        return EpochViews(self.offsets.to(device), self.flips.to(device))


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """An explicit CPU generator for one (seed, epoch, stream): nothing global is touched."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{stream}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def epoch_views(
    num_images: int, seed: int, epoch: int, pad: int = PAD, flips: str = "random"
) -> EpochViews:
    """Draw crop offsets and flips for every image of an epoch (stream 1 of the epoch's seeds).

    flips="random": each image is mirrored with probability 1/2, afresh every epoch (the study's).
    flips="alternate": epoch 0's random flips, then each image alternates between its two mirror
    images (airbench's trick: over any two epochs a net sees both, with no repeats by chance).
    """
    check_flip_mode(flips)
    generator = epoch_generator(seed, epoch, stream=1)
    offsets = torch.randint(0, 2 * pad + 1, (num_images, 2), generator=generator)
    mirrored = torch.rand(num_images, generator=generator) < 0.5
    if flips == "alternate" and epoch > 0:
        mirrored = epoch_views(num_images, seed, 0, pad).flips ^ bool(epoch % 2)
    return EpochViews(offsets, mirrored)


def check_flip_mode(flips: str) -> None:
    if flips not in FLIP_MODES:
        raise ValueError(f"Unknown flip mode {flips!r}; use {' or '.join(FLIP_MODES)}.")


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled visiting order of an epoch (stream 0 of the epoch's seeds)."""
    return torch.randperm(num_images, generator=epoch_generator(seed, epoch, stream=0))


def crop_flip(
    images: torch.Tensor, views: EpochViews, pad: int = PAD, fill: str = "zero"
) -> torch.Tensor:
    """Pad by `pad`, crop back to the input size at `views.offsets`, mirror where `flips`.

    fill="zero" pads with black, as the study's RandomCrop does; fill="reflect" with the image's
    own mirror at its edges, as airbench does (torch's "reflect": the edge pixel is not repeated).
    images: (B, C, H, W), any dtype, on any device; returns the same shape, dtype and device.
    """
    check_fill(fill)
    batch, channels, height, width = images.shape
    offsets = views.offsets.to(images.device)
    rows = offsets[:, 0:1] + torch.arange(height, device=images.device)  # (B, H), padded coords
    cols = offsets[:, 1:2] + torch.arange(width, device=images.device)  # (B, W)
    if fill == "reflect":  # index the image itself: any dtype, no padded copy
        if pad >= min(height, width):
            raise ValueError(f"Reflect padding must be below the image size (got {pad}).")
        source, rows, cols = images, _reflect(rows - pad, height), _reflect(cols - pad, width)
    else:
        source = torch.nn.functional.pad(images, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    flips = views.flips.to(images.device)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    cropped = source.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2)  # (B, C, H, W), channels-last in memory


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices in [-size+1, 2*size-2] folded into [0, size) by mirroring at the edges."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def describe_views(padding: int, fill: str) -> str:
    """Training crops in words: `describe_views(4, "zero")` is the study's."""
    borders = "black borders" if fill == "zero" else "mirrored borders"
    return f"crops padded by {padding} with {borders}"


def check_teacher_tta(tta: str) -> None:
    if tta not in TEACHER_TTA_MODES:
        raise ValueError(
            f"Unknown teacher test-time augmentation {tta!r}; use {' or '.join(TEACHER_TTA_MODES)}."
        )


def check_fill(fill: str) -> None:
    if fill not in FILLS:
        raise ValueError(f"Unknown crop fill {fill!r}; use {' or '.join(FILLS)}.")


def shifted_view(images: torch.Tensor, shift: int, mirrored: bool) -> torch.Tensor:
    """Every image moved by `shift` pixels down and right (up and left when negative), the edge
    filled by reflection, and mirrored: the views of test-time augmentation."""
    offsets = torch.full((len(images), 2), abs(shift) - shift, dtype=torch.long)
    flips = torch.full((len(images),), mirrored, dtype=torch.bool)
    return crop_flip(images, EpochViews(offsets, flips), pad=abs(shift), fill="reflect")


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels -> the study's `Normalize(0.5, 0.5)` of `ToTensor()`: x / 127.5 - 1."""
    return images.to(dtype) / 127.5 - 1.0


def train_batch(
    images: torch.Tensor,
    views: EpochViews,
    dtype: torch.dtype = torch.float32,
    pad: int = PAD,
    fill: str = "zero",
) -> torch.Tensor:
    """The augmented, normalised training input for a batch of uint8 images."""
    return normalize(crop_flip(images, views, pad, fill), dtype)
