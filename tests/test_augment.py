"""The batched crop+flip and normalise reproduce the study's torchvision transforms exactly."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms.v2 import functional as TF

from kdcore.augment import (
    PAD,
    EpochViews,
    crop_flip,
    epoch_order,
    epoch_views,
    normalize,
    shifted_view,
    train_batch,
)

ALL_VIEWS = list(itertools.product(range(2 * PAD + 1), range(2 * PAD + 1), (False, True)))


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)


def every_view(images: torch.Tensor) -> tuple[torch.Tensor, EpochViews]:
    """Each image repeated under each of the 9 x 9 x 2 possible views."""
    repeated = images.repeat_interleave(len(ALL_VIEWS), dim=0)
    offsets = torch.tensor([(top, left) for top, left, _ in ALL_VIEWS] * len(images))
    flips = torch.tensor([flip for _, _, flip in ALL_VIEWS] * len(images))
    return repeated, EpochViews(offsets, flips)


def torchvision_view(image: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
    """RandomCrop(32, padding=4) with fill 0 at a given origin, then RandomHorizontalFlip."""
    padded = TF.pad(image, [PAD], fill=0)
    view = TF.crop(padded, top, left, 32, 32)
    return TF.horizontal_flip(view) if flip else view


def test_crop_flip_equals_torchvision_for_every_offset_and_flip():
    images = random_images(2)
    batch, views = every_view(images)
    ours = crop_flip(batch, views)
    for row, (image_index, (top, left, flip)) in enumerate(
        itertools.product(range(len(images)), ALL_VIEWS)
    ):
        expected = torchvision_view(images[image_index], top, left, flip)
        assert torch.equal(ours[row], expected), (image_index, top, left, flip)


def test_crop_flip_matches_the_classic_pil_transforms():
    image = random_images(1, seed=5)[0]
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    for top, left, flip in [(0, 0, False), (8, 3, True), (2, 8, False)]:
        padded = transforms.functional.pad(pil, PAD, fill=0)
        view = transforms.functional.crop(padded, top, left, 32, 32)
        if flip:
            view = transforms.functional.hflip(view)
        expected = torch.from_numpy(np.array(view)).permute(2, 0, 1)
        ours = crop_flip(image[None], EpochViews(torch.tensor([[top, left]]), torch.tensor([flip])))
        assert torch.equal(ours[0], expected)


def test_padding_is_zero_where_the_crop_leaves_the_image():
    white = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    view = crop_flip(white, EpochViews(torch.tensor([[0, 0]]), torch.tensor([False])))[0]
    assert torch.all(view[:, :PAD, :] == 0) and torch.all(view[:, :, :PAD] == 0)
    assert torch.all(view[:, PAD:, PAD:] == 255)
    expected = torchvision_view(white[0], 0, 0, False)
    assert torch.equal(view, expected)


def test_crop_offsets_cover_exactly_zero_to_eight_uniformly():
    n = 18_000
    offsets = epoch_views(n, seed=1, epoch=0).offsets
    assert offsets.dtype == torch.int64
    for axis in (0, 1):
        values, counts = offsets[:, axis].unique(return_counts=True)
        assert values.tolist() == list(range(2 * PAD + 1))
        expected, sd = n / 9, math.sqrt(n * (1 / 9) * (8 / 9))
        assert torch.all((counts - expected).abs() < 5 * sd), counts


def test_flip_rate_is_one_half():
    n = 20_000
    flips = epoch_views(n, seed=2, epoch=3).flips
    assert flips.dtype == torch.bool
    assert abs(int(flips.sum()) - n / 2) < 5 * math.sqrt(n / 4)


def test_normalize_equals_to_tensor_then_normalize_half():
    image = random_images(1, seed=7)[0]
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    study = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    )
    expected = study(pil)
    ours = normalize(image[None])[0]
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_train_batch_is_normalised_crop_flip():
    images = random_images(6)
    views = epoch_views(6, seed=0, epoch=0)
    torch.testing.assert_close(train_batch(images, views), normalize(crop_flip(images, views)))


def test_epoch_views_are_a_pure_function_of_seed_epoch_and_size():
    # The contract is (seed, epoch, N): the flips of image i also depend on N (they are drawn
    # after all N offsets), so the teacher cache keys its folder by the subset size too.
    first, again = epoch_views(500, seed=3, epoch=2), epoch_views(500, seed=3, epoch=2)
    assert torch.equal(first.offsets, again.offsets) and torch.equal(first.flips, again.flips)
    other_epoch = epoch_views(500, seed=3, epoch=3)
    other_seed = epoch_views(500, seed=4, epoch=2)
    assert not torch.equal(first.offsets, other_epoch.offsets)
    assert not torch.equal(first.offsets, other_seed.offsets)


def test_epoch_order_is_a_seeded_permutation():
    order = epoch_order(300, seed=0, epoch=1)
    assert sorted(order.tolist()) == list(range(300))
    assert torch.equal(order, epoch_order(300, seed=0, epoch=1))
    assert not torch.equal(order, epoch_order(300, seed=0, epoch=2))


def test_views_and_order_leave_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    epoch_views(1000, seed=0, epoch=0)
    epoch_order(1000, seed=0, epoch=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_select_picks_the_views_of_the_given_images():
    views = epoch_views(50, seed=0, epoch=0)
    indices = torch.tensor([7, 3, 41])
    picked = views.select(indices)
    assert torch.equal(picked.offsets, views.offsets[indices])
    assert torch.equal(picked.flips, views.flips[indices])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_crop_flip_keeps_shape_and_dtype_and_accepts_channels_last(dtype):
    images = random_images(8).to(dtype)
    views = epoch_views(8, seed=9, epoch=0)
    expected = crop_flip(images, views)
    channels_last = images.contiguous(memory_format=torch.channels_last)
    ours = crop_flip(channels_last, views)
    assert ours.shape == images.shape and ours.dtype == dtype
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_reflect_fill_equals_torch_reflect_padding_for_every_offset_and_flip(dtype):
    images = random_images(2).to(dtype)
    batch, views = every_view(images)
    ours = crop_flip(batch, views, fill="reflect")
    padded = torch.nn.functional.pad(images.float(), (PAD,) * 4, mode="reflect").to(dtype)
    for row, (image_index, (top, left, flip)) in enumerate(
        itertools.product(range(len(images)), ALL_VIEWS)
    ):
        expected = padded[image_index, :, top : top + 32, left : left + 32]
        assert torch.equal(ours[row], expected.flip(2) if flip else expected), (top, left, flip)


def test_reflect_fill_refuses_a_padding_as_large_as_the_image():
    with pytest.raises(ValueError, match="Reflect padding must be below the image size"):
        small = random_images(1)[:, :, :4, :4]
        crop_flip(small, epoch_views(1, 0, 0, pad=4), pad=4, fill="reflect")
    with pytest.raises(ValueError, match="Unknown crop fill 'edge'"):
        crop_flip(random_images(1), epoch_views(1, 0, 0), fill="edge")


@pytest.mark.parametrize("shift", [-2, -1, 0, 1, 2])
def test_shifted_view_moves_the_image_and_reflects_at_the_edge(shift):
    images = random_images(3, seed=2)
    view = shifted_view(images, shift, mirrored=False)
    inner = slice(max(shift, 0), 32 + min(shift, 0))
    source = slice(max(-shift, 0), 32 - max(shift, 0))
    assert torch.equal(view[:, :, inner, inner], images[:, :, source, source])  # moved by shift
    padded = torch.nn.functional.pad(images.float(), (abs(shift),) * 4, mode="reflect")
    start = abs(shift) - shift
    expected = padded[:, :, start : start + 32, start : start + 32].to(torch.uint8)
    assert torch.equal(view, expected)
    assert torch.equal(shifted_view(images, shift, mirrored=True), expected.flip(3))


def test_alternate_flips_mirror_each_image_every_other_epoch_with_the_same_crops():
    random_views = [epoch_views(400, seed=1, epoch=e) for e in range(4)]
    alternate = [epoch_views(400, seed=1, epoch=e, flips="alternate") for e in range(4)]
    for plain, alternating in zip(random_views, alternate, strict=True):
        assert torch.equal(plain.offsets, alternating.offsets)
    first = alternate[0].flips
    assert torch.equal(first, random_views[0].flips)  # epoch 0 draws them as the study does
    assert torch.equal(alternate[1].flips, ~first)
    assert torch.equal(alternate[2].flips, first)
    assert torch.equal(alternate[3].flips, ~first)
    assert not torch.equal(random_views[1].flips, ~first)  # the study's flips draw afresh


def test_an_unknown_flip_mode_is_refused():
    with pytest.raises(ValueError, match="Unknown flip mode 'sometimes'"):
        epoch_views(10, seed=0, epoch=0, flips="sometimes")
