"""Uploaded bytes -> a safe RGB image -> uint8 tensors -> probabilities at temperature T.

    image = decode_image(uploaded.getvalue(), name=uploaded.name)  # raises ImageDecodeError
    view = to_model_view(image)                                    # 32x32 RGB, what the model sees
    probs = predict(model, image_to_tensor(view), temperature=4.0) # (1, C) float32 on CPU
    top_k(probs[0], class_names)                                   # [("cat", 0.61), ...]

Decoding never trusts the file: formats are restricted, the pixel count is checked from the
header before any pixel is decoded, JPEGs are decoded reduced, and truncated data is an error.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from kdcore.augment import normalize
from kdcore.losses import check_temperature, distillation_terms, soft_targets

ACCEPTED_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp")
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")  # Pillow format names
MAX_SIDE = 1024  # decoded images are reduced to at most this many pixels per side
MAX_PIXELS = 40_000_000  # larger images are refused from their header, never decoded
MAX_IMAGE_BYTES = 20 * 2**20  # the dashboard's upload limit (.streamlit/config.toml), per file

_ACCEPTED_TEXT = "use png, jpg, jpeg, webp or bmp"
# Leading bytes of common formats we refuse, so the message can name them (never decoded).
_KNOWN_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError)


class ImageDecodeError(ValueError):
    """The uploaded bytes cannot become an image; the message is a sentence for the user."""


def decode_image(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode untrusted bytes into an RGB image with sides of at most MAX_SIDE pixels.

        image = decode_image(path.read_bytes(), name=path.name)

    EXIF orientation is applied; transparency is composited over white; 16-bit images are
    scaled (not clipped) to 8 bits. Raises ImageDecodeError with a user-facing message.
    """
    image = open_image(data, name, max_pixels)
    width, height = image.size
    # JPEG only: decode at 1/2, 1/4 or 1/8 scale when that still covers MAX_SIDE, so a huge
    # photo never exists at full size in memory. Other formats ignore draft().
    scale = min(1.0, MAX_SIDE / max(width, height))
    image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(_too_large(name, width * height, max_pixels)) from error
    except _DECODE_ERRORS as error:
        raise ImageDecodeError(f"{name} is truncated or corrupt.") from error
    rgb = _to_rgb(image, name)
    rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return rgb


def open_image(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Image.open limited to ACCEPTED_FORMATS and `max_pixels`; reads the header only.

    Raises ImageDecodeError, whose message names the file, for anything that is not an image
    we accept.
    """
    if not data:
        raise ImageDecodeError(f"{name} is empty.")
    try:
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError as error:
        # Pillow refuses anything over 2 * MAX_IMAGE_PIXELS while reading the header.
        pixels = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageDecodeError(_too_large(name, pixels, max_pixels, over=True)) from error
    except UnidentifiedImageError as error:
        for signature, format_name in _KNOWN_SIGNATURES:
            if data.startswith(signature):
                raise ImageDecodeError(_not_accepted(name, format_name)) from error
        raise ImageDecodeError(f"{name} is not an image Pillow can read.") from error
    except _DECODE_ERRORS as error:
        raise ImageDecodeError(f"{name} is truncated or corrupt.") from error
    # MPO (multi-picture JPEG from cameras) is read through the JPEG plugin: accept it.
    if image.format not in ACCEPTED_FORMATS and image.format != "MPO":
        raise ImageDecodeError(_not_accepted(name, image.format))
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(_too_large(name, width * height, max_pixels))
    return image


def _too_large(name: str, pixels: int, max_pixels: int, over: bool = False) -> str:
    size = f"{'over ' if over else ''}{pixels / 1e6:.3g} megapixels"
    return f"{name} is too large ({size}; limit {max_pixels / 1e6:.3g})."


def _not_accepted(name: str, format_name: str | None) -> str:
    return f"{name} is in format {format_name}, which is not accepted; {_ACCEPTED_TEXT}."


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode -> RGB: alpha over white, 16-bit and float scaled to 0..255."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_l(image).convert("RGB")
    if "A" in image.getbands() or "transparency" in image.info or image.mode in ("RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, RGB
    except ValueError as error:
        raise ImageDecodeError(
            f"{name} uses colour mode {image.mode}, which is not supported."
        ) from error


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit integer or float grayscale -> 8-bit L, scaled rather than clipped.

    Integers in 0..65535 are 16-bit samples (65535 -> 255); floats in 0..1 map to 0..255;
    anything else is stretched from its own minimum to maximum.
    """
    image = image.convert("F") if image.mode == "F" else image.convert("I")
    low, high = image.getextrema()
    if image.mode == "I" and low >= 0 and high <= 65535:
        low, high = 0, 65535
    elif image.mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    span = (high - low) or 1
    # point() with an affine lambda is applied exactly; +0.5 rounds on the later truncation.
    return image.point(lambda v: (v - low) * 255 / span + 0.5).convert("L")


def to_model_view(image: Image.Image, size: int = 32) -> Image.Image:
    """The size x size RGB view the models see: the whole image, squashed (aspect not kept).

    Squashing rather than cropping keeps every object in frame, as the 32x32 CIFAR thumbnails
    do. LANCZOS in Pillow widens its kernel by the reduction factor, so a 1024 -> 32 reduction
    is properly low-pass filtered (no aliasing), unlike a bare bilinear sample.
    """
    return image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> uint8 tensor (3, H, W).

    image_to_tensor(to_model_view(image)).shape == (3, 32, 32)
    """
    rgb = image.convert("RGB")
    width, height = rgb.size
    flat = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return flat.view(height, width, 3).permute(2, 0, 1).contiguous()


def softened_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """losses.soft_targets with T checked: softmax(logits / T) over the last dim, in float32.

    T > 1 flattens, T < 1 sharpens, T = inf is uniform; T <= 0 or NaN raises ValueError.

    softened_probabilities(torch.tensor([2.0, 0.0]), 1.0)  # tensor([0.8808, 0.1192])
    """
    check_temperature(temperature)
    return soft_targets(logits, temperature)


@torch.inference_mode()
def logits(model: torch.nn.Module, images_uint8: torch.Tensor) -> torch.Tensor:
    """Raw logits (B, C) float32 on CPU for uint8 images (3, 32, 32) or (B, 3, 32, 32).

    The model runs in eval mode on its own device; its previous train/eval mode is restored.
    """
    if images_uint8.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images_uint8.dtype}")
    batch = images_uint8.unsqueeze(0) if images_uint8.dim() == 3 else images_uint8
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got {tuple(images_uint8.shape)}")
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        return model(normalize(batch.to(device))).float().cpu()  # (B, C)
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def predict(
    model: torch.nn.Module, images_uint8: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Probabilities softmax(logits / T), (B, C) float32 on CPU; see `logits` for the input.

    probs = predict(student, image_to_tensor(view), temperature=4.0)
    """
    check_temperature(temperature)  # fail before running the model
    return soft_targets(logits(model, images_uint8), temperature)


def top_k(
    probabilities: torch.Tensor, class_names: Sequence[str], k: int = 3
) -> list[tuple[str, float]]:
    """The k most probable classes, best first: [("cat", 0.61), ("dog", 0.22), ...]."""
    if probabilities.dim() != 1 or probabilities.numel() != len(class_names):
        raise ValueError(
            f"probabilities must be shape ({len(class_names)},), got {tuple(probabilities.shape)}"
        )
    if k < 1:
        raise ValueError(f"top-k must be at least 1 (got {k}).")
    values, indices = torch.topk(probabilities, min(k, len(class_names)))
    return [
        (class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dim; 0 * log 0 counts as 0. Uniform over C: log C."""
    return -torch.special.xlogy(probabilities, probabilities).sum(dim=-1)


def kl_divergence(p_teacher: torch.Tensor, p_student: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) in nats over the last dim: sum p_t * (log p_t - log p_s).

    Terms with p_t = 0 count as 0; p_s is clamped away from 0 so the result stays finite.
    """
    tiny = torch.finfo(p_student.dtype).tiny
    kl = torch.special.xlogy(p_teacher, p_teacher) - torch.special.xlogy(
        p_teacher, p_student.clamp_min(tiny)
    )
    return kl.sum(dim=-1).clamp_min(0.0)


def temperature_sweep(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperatures: Sequence[float]
) -> dict[str, list[float]]:
    """Entropies and KL(teacher || student) of one image's softened outputs at each T.

    sweep = temperature_sweep(t_logits, s_logits, [0.5, 1, 2, 4, 8])
    sweep.keys() == {"temperature", "teacher_entropy", "student_entropy", "kl"}
    """
    sweep: dict[str, list[float]] = {
        "temperature": [],
        "teacher_entropy": [],
        "student_entropy": [],
        "kl": [],
    }
    for temperature in temperatures:
        p_teacher = softened_probabilities(teacher_logits, temperature)
        p_student = softened_probabilities(student_logits, temperature)
        sweep["temperature"].append(float(temperature))
        sweep["teacher_entropy"].append(float(entropy(p_teacher)))
        sweep["student_entropy"].append(float(entropy(p_student)))
        sweep["kl"].append(float(kl_divergence(p_teacher, p_student)))
    return sweep


def loss_terms_sweep(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperatures: Sequence[float],
    alpha: float,
) -> dict[str, list[float]]:
    """The study's loss on N images (logits (N, C), labels (N,)) at each T for one alpha, as
    distillation weighs it: `soft` alpha * T^2 * KL, `hard` (1 - alpha) * CE, their sum `loss`,
    and `soft_share`, the part of the loss that comes from the teacher (0 where the loss is 0).

    sweep = loss_terms_sweep(s_logits, t_logits, labels, [1, 2, 4], alpha=0.5)
    sweep.keys() == {"temperature", "soft", "hard", "loss", "soft_share"}
    """
    sweep: dict[str, list[float]] = {
        "temperature": [],
        "soft": [],
        "hard": [],
        "loss": [],
        "soft_share": [],
    }
    for temperature in temperatures:
        terms = distillation_terms(student_logits, teacher_logits, labels, temperature, alpha)
        soft, hard = alpha * float(terms["soft"]), (1.0 - alpha) * float(terms["hard"])
        sweep["temperature"].append(float(temperature))
        sweep["soft"].append(soft)
        sweep["hard"].append(hard)
        sweep["loss"].append(soft + hard)
        sweep["soft_share"].append(soft / (soft + hard) if soft + hard > 0 else 0.0)
    return sweep


Models = Mapping[str, tuple[torch.nn.Module, Sequence[str]]]  # name -> (model, class names)


@dataclass
class ClassifiedImage:
    """One image (an upload or a test image) and each model's top-k for it."""

    name: str
    image: Image.Image | None = None  # the decoded upload, at most MAX_SIDE pixels a side
    view: Image.Image | None = None  # the 32x32 view the models see
    top: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    error: str | None = None  # a sentence for the user when the file cannot be used
    truth: str | None = None  # the true class, where it is known (a test image)


def classify_upload(
    name: str, data: bytes, models: Models, k: int = 3, temperature: float = 1.0
) -> ClassifiedImage:
    """Decode one file and give every model's top-k; a bad file comes back with `error` set.

        result = classify_upload("cat.png", data, {"teacher": (teacher, classes)}, k=3)
        result.error or result.top["teacher"]  # [("cat", 0.61), ("dog", 0.22), ...]

    Never raises for bad bytes: empty, truncated, non-image, refused formats and decompression
    bombs all come back with `error`, so the other files of a batch still run.
    """
    try:
        image = decode_image(data, name=name)
    except ImageDecodeError as error:
        return ClassifiedImage(name, error=str(error))
    except Exception as error:  # anything Pillow did not foresee is still this file's problem
        return ClassifiedImage(name, error=f"{name} could not be read: {error}")
    view = to_model_view(image)
    pixels = image_to_tensor(view)  # (3, 32, 32) uint8
    top = {
        model_name: top_k(predict(model, pixels, temperature)[0], list(classes), k)
        for model_name, (model, classes) in models.items()
    }
    return ClassifiedImage(name, image=image, view=view, top=top)
