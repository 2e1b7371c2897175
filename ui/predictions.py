"""Models on single images, for the Softened outputs and Classify pages (no Streamlit here).

models = {"teacher": (teacher, classes), "student": (student, classes)}
result = classify_upload("cat.png", data, models, k=3)
result.error or result.top["teacher"]     # [("cat", 0.61), ("dog", 0.22), ("deer", 0.05)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from kdcore.augment import normalize
from kdcore.inference import (
    ImageDecodeError,
    decode_image,
    image_to_tensor,
    softened_probabilities,
    to_model_view,
    top_k,
)

Models = Mapping[str, tuple[torch.nn.Module, Sequence[str]]]  # name -> (model, class names)


@torch.inference_mode()
def logits_for(model: torch.nn.Module, image_uint8: torch.Tensor) -> torch.Tensor:
    """Raw logits (C,) of one uint8 image (3, 32, 32), model in eval mode on the CPU."""
    model.eval()
    return model(normalize(image_uint8.unsqueeze(0)))[0].float()


def enlarge(image: Image.Image, side: int = 160) -> Image.Image:
    """A 32x32 view blown up with square pixels, so it is seen as the model sees it."""
    return image.resize((side, side), Image.Resampling.NEAREST)


@dataclass
class ClassifiedUpload:
    name: str
    image: Image.Image | None = None  # the decoded upload, at most 1024 px a side
    view: Image.Image | None = None  # the 32x32 view the models see
    top: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    error: str | None = None  # a sentence for the user when the file cannot be used


def classify_upload(name: str, data: bytes, models: Models, k: int = 3) -> ClassifiedUpload:
    """Decode one uploaded file and classify it with every model; a bad file gives `error`.

    Never raises for bad bytes: empty, truncated, non-image, refused formats and decompression
    bombs all come back as a `ClassifiedUpload` with `error` set, so other files still run.
    """
    try:
        image = decode_image(data, name=name)
    except ImageDecodeError as error:
        return ClassifiedUpload(name, error=str(error))
    except Exception as error:  # anything Pillow did not foresee is still this file's problem
        return ClassifiedUpload(name, error=f"{name} could not be read: {error}")
    view = to_model_view(image)
    pixels = image_to_tensor(view)  # (3, 32, 32) uint8
    top = {}
    for model_name, (model, classes) in models.items():
        probabilities = softened_probabilities(logits_for(model, pixels), 1.0)
        top[model_name] = top_k(probabilities, list(classes), k)
    return ClassifiedUpload(name, image=image, view=view, top=top)
