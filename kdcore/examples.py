"""Test images worth a look: where the teacher and the student are right, wrong or disagree.

pool = example_pool(test)  # the same test images on every call; example_indices: where in test
logits = {"teacher": predict_logits(teacher, pool), "student": ...}  # (len(pool), C) each
masks = example_masks(pool.labels, logits)
shown = draw_examples(masks["the teacher right, the student wrong"], count=6, draw=0)
results = classified_examples(pool, shown, logits, k=3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from PIL import Image

from kdcore.data import ImageSet
from kdcore.inference import ClassifiedImage, top_k

EXAMPLE_POOL = 2000  # test images predicted once per model; every choice draws from these
ANY_IMAGE = "any image"


def example_pool(test: ImageSet, size: int = EXAMPLE_POOL) -> ImageSet:
    """A fixed random `size` of the test images (all of them if fewer), in split order."""
    return test.subset(size, seed=0)


def example_indices(test: ImageSet, size: int = EXAMPLE_POOL) -> torch.Tensor:
    """Where each image of `example_pool(test, size)` sits in the test split: (size,) int64."""
    return test.subset_indices(size, seed=0)


def place_in_class(labels: torch.Tensor, index: int) -> int:
    """How many images of image `index`'s class come before it: its number within the class,
    from 0, as a page that picks an image by class and number counts."""
    return int((labels[:index] == labels[index]).sum())


def example_masks(
    labels: torch.Tensor, logits: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Which images (N,) bool each choice keeps, for one model or two (named as in `logits`).

    One model: any image, it wrong, it right. Two: any image, the first right and the second
    wrong, the other way round, the two disagreeing, both wrong.
    """
    predicted = {name: values.argmax(1) for name, values in logits.items()}
    right = {name: guess == labels for name, guess in predicted.items()}
    masks = {ANY_IMAGE: torch.ones_like(labels, dtype=torch.bool)}
    names = list(predicted)
    if len(names) == 1:
        (name,) = names
        masks[f"the {name} wrong"] = ~right[name]
        masks[f"the {name} right"] = right[name]
    elif len(names) == 2:
        first, second = names
        masks[f"the {first} right, the {second} wrong"] = right[first] & ~right[second]
        masks[f"the {second} right, the {first} wrong"] = right[second] & ~right[first]
        masks["the two disagree"] = predicted[first] != predicted[second]
        masks["both wrong"] = ~right[first] & ~right[second]
    elif names:
        raise ValueError(f"Examples compare one model or two, not {len(names)}.")
    return masks


def draw_examples(mask: torch.Tensor, count: int, draw: int = 0) -> torch.Tensor:
    """Up to `count` positions where `mask` holds, in pool order; `draw` picks which."""
    if count < 1:
        raise ValueError(f"Show at least one image (got {count}).")
    matching = torch.nonzero(mask).flatten()
    order = torch.randperm(len(matching), generator=torch.Generator().manual_seed(draw))
    return matching[order[:count]].sort().values


def classified_examples(
    pool: ImageSet,
    positions: Sequence[int] | torch.Tensor,
    logits: Mapping[str, torch.Tensor],
    k: int = 3,
) -> list[ClassifiedImage]:
    """Each chosen pool image, as the Classify page shows an upload, with its true class; named
    by its place in the pool, as `draw_examples` gives it."""
    results = []
    for position in [int(p) for p in positions]:
        pixels = pool.images[position].permute(1, 2, 0).numpy()  # (32, 32, 3) uint8
        view = Image.fromarray(pixels)
        top = {
            name: top_k(torch.softmax(values[position].float(), 0), pool.classes, k)
            for name, values in logits.items()
        }
        truth = pool.classes[int(pool.labels[position])]
        name = f"test image {position + 1:,} of {len(pool):,}"
        results.append(ClassifiedImage(name, view, view, top, truth=truth))
    return results
