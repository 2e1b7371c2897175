"""The study's student (SmallCNN) and the ResNet teachers.

A model is rebuilt from two facts that every checkpoint carries: its architecture name and its
number of classes (`build_model(arch, num_classes)`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

STUDENT_ARCH = "smallcnn"
DEFAULT_TEACHER_ARCH = "resnet101"

# name -> (torchvision builder, weights enum name of the ImageNet weights)
TEACHER_ARCHS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "resnet18": (tv_models.resnet18, "ResNet18_Weights"),
    "resnet34": (tv_models.resnet34, "ResNet34_Weights"),
    "resnet50": (tv_models.resnet50, "ResNet50_Weights"),
    "resnet101": (tv_models.resnet101, "ResNet101_Weights"),
    "resnet152": (tv_models.resnet152, "ResNet152_Weights"),
}
TEACHER_INITS = ("scratch", "imagenet", "file")


class ModelError(ValueError):
    """A model cannot be built as asked; the message says what to do."""


class SmallCNN(nn.Module):
    """The study's student: three 3x3 convs (32/64/128), global average pooling, a linear head.

    Parameter names (`features.0`, `features.3`, `features.6`, `classifier`) are the study's, so
    its state_dicts load here with `strict=True` and ours load there.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, 32, 16, 16)
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, 64, 8, 8)
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),  # (B, 128, 1, 1)
        )
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def known_archs() -> list[str]:
    return [STUDENT_ARCH, *TEACHER_ARCHS]


def build_model(arch: str, num_classes: int = 10) -> nn.Module:
    """An untrained model by name: `build_model("resnet101", 10)`."""
    if arch == STUDENT_ARCH:
        return SmallCNN(num_classes)
    builder, _ = _teacher_entry(arch)
    model = builder(weights=None)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def build_teacher(
    arch: str = DEFAULT_TEACHER_ARCH,
    num_classes: int = 10,
    init: str = "scratch",
    weights_file: str | Path | None = None,
) -> nn.Module:
    """A ResNet teacher with a fresh `num_classes` head.

    `init="scratch"`: random weights. `init="imagenet"`: torchvision's ImageNet weights, taken from
    `weights_file` when given, else through torchvision's weights API and its cache (this needs
    internet once). `init="file"`: an ImageNet-shaped state_dict from `weights_file`.
    """
    builder, weights_enum_name = _teacher_entry(arch)
    if init not in TEACHER_INITS:
        raise ModelError(
            f"Unknown initialisation {init!r}; choose one of {', '.join(TEACHER_INITS)}."
        )
    if init == "scratch":
        return build_model(arch, num_classes)
    if init == "file" and weights_file is None:
        raise ModelError("Initialisation 'file' needs a weights file (--weights-file PATH).")
    if weights_file is not None:
        model = builder(weights=None)
        # strict on the backbone; the head is replaced below, so the file's fc (any size or none)
        # is not needed
        model.load_state_dict(_read_backbone_state(Path(weights_file), arch), strict=False)
    else:
        model = _download_imagenet(builder, arch, weights_enum_name)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def _teacher_entry(arch: str) -> tuple[Callable[..., nn.Module], str]:
    if arch not in TEACHER_ARCHS:
        raise ModelError(f"Unknown architecture {arch!r}; known: {', '.join(known_archs())}.")
    return TEACHER_ARCHS[arch]


def _download_imagenet(builder: Callable[..., nn.Module], arch: str, enum_name: str) -> nn.Module:
    weights = getattr(tv_models, enum_name).IMAGENET1K_V1
    try:
        return builder(weights=weights)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        file_name = Path(weights.url).name
        cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
        raise ModelError(
            f"Could not fetch the ImageNet weights for {arch} ({error}). Offline, download "
            f"{weights.url} elsewhere and either put {file_name} in {cache_dir} or pass it "
            f"with --weights-file PATH."
        ) from error


def _read_backbone_state(path: Path, arch: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"Weights file {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelError(
            f"Weights file {path} is not a readable PyTorch state_dict: {error}"
        ) from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"Weights file {path} does not hold {arch} weights.")
    # the backbone must match exactly (names and shapes); fc is dropped, whatever its size
    expected = {k: v for k, v in build_model(arch).state_dict().items() if not k.startswith("fc.")}
    backbone = {k: v for k, v in state.items() if not str(k).startswith("fc.")}
    if set(backbone) != set(expected) or any(
        not isinstance(backbone[k], torch.Tensor) or backbone[k].shape != v.shape
        for k, v in expected.items()
    ):
        raise ModelError(f"Weights file {path} does not hold {arch} weights.")
    return backbone
