"""The study's student (SmallCNN) and the teachers: CifarNet and the ResNets.

A model is rebuilt from the facts every checkpoint carries: its architecture name, its number of
classes and, for a ResNet, its stem (`build_model(arch, num_classes, stem)`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tv_models

STUDENT_ARCH = "smallcnn"
CIFARNET_ARCH = "cifarnet"
DEFAULT_TEACHER_ARCH = "resnet101"  # the study's teacher

# name -> (torchvision builder, weights enum name of the ImageNet weights)
RESNET_ARCHS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "resnet18": (tv_models.resnet18, "ResNet18_Weights"),
    "resnet34": (tv_models.resnet34, "ResNet34_Weights"),
    "resnet50": (tv_models.resnet50, "ResNet50_Weights"),
    "resnet101": (tv_models.resnet101, "ResNet101_Weights"),
    "resnet152": (tv_models.resnet152, "ResNet152_Weights"),
}
TEACHER_ARCHS = (CIFARNET_ARCH, *RESNET_ARCHS)
TEACHER_INITS = ("scratch", "imagenet", "file")
# cifar: a 3x3 stride-1 first conv and no max-pool, so layer1 sees 32x32 maps (ImageNet's 7x7
# stride-2 conv and max-pool leave 8x8 there and 1x1 in layer4). imagenet: torchvision's own.
STEMS = ("cifar", "imagenet")
DEFAULT_STEM = "cifar"
LEGACY_STEM = "imagenet"  # ResNets saved before stems were a choice had torchvision's


class ModelError(ValueError):
    """A model cannot be built as asked; the message says what to do."""


def suggested_teacher_arch(cuda_available: bool | None = None) -> str:
    """ResNet101 (the study's) where a GPU trains it in minutes; CifarNet on a CPU."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    return DEFAULT_TEACHER_ARCH if cuda_available else CIFARNET_ARCH


def is_resnet(arch: str) -> bool:
    return arch in RESNET_ARCHS


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


class CifarNet(nn.Module):
    """A compact CIFAR teacher after airbench (Keller Jordan, 2024), sized for a 2-core CPU.

    A 2x2 conv whose filters whiten the image patches (fitted to the training images by
    `initialise_from`, then frozen but for its bias), three groups of (conv, max-pool, BN, GELU,
    conv, BN, GELU) at 31/15, 15/7 and 7/3 px, a global max-pool and a linear head whose logits
    are scaled by 1/9. The convs start as identities on their first channels (dirac), the
    BatchNorms learn a shift only, and `lr_scale` lets those shifts learn 64x faster.
    With the default widths it costs 69.1 M multiply-adds per 32x32 image (SmallCNN: 10.3 M;
    ResNet18 with the cifar stem: 555 M), measured by `multiply_adds` in tests/test_models.py.
    """

    WHITENING_KERNEL = 2
    LOGIT_SCALE = 1 / 9
    SHIFT_LR_SCALE = 64.0
    WHITENING_IMAGES = 5000

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (48, 192, 192)):
        super().__init__()
        whitened = 2 * 3 * self.WHITENING_KERNEL**2  # each whitening filter and its negative
        self.whiten = nn.Conv2d(3, whitened, self.WHITENING_KERNEL, bias=True)  # (B, 24, 31, 31)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        channels = (whitened, *widths)
        self.groups = nn.Sequential(
            *(_ConvGroup(cin, cout) for cin, cout in zip(channels[:-1], channels[1:], strict=True))
        )  # (B, widths[-1], 3, 3)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        return self.classifier(torch.flatten(self.pool(x), 1)) * self.LOGIT_SCALE

    @torch.no_grad()
    def initialise_from(self, images: torch.Tensor) -> None:
        """Whitening filters from normalised training images (N, 3, H, W): the eigenvectors of
        their 2x2 patches' second moments, each scaled by 1/sqrt(eigenvalue)."""
        k = self.WHITENING_KERNEL
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, 3, H-1, W-1, k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k)
        moments = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(moments)
        filters = eigenvectors.T / torch.sqrt(eigenvalues + 5e-4)[:, None]
        filters = filters.reshape(-1, 3, k, k).to(self.whiten.weight)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def lr_scale(self, name: str) -> float:
        """How much faster than the rest the parameter called `name` learns."""
        return self.SHIFT_LR_SCALE if ".norm" in name else 1.0


class _ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm1 = _shift_only_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _shift_only_norm(cout)
        with torch.no_grad():  # an identity on the first channels: the group starts near a skip
            nn.init.dirac_(self.conv1.weight[: min(cin, cout)])
            nn.init.dirac_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


def _shift_only_norm(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels)
    norm.weight.requires_grad_(False)  # the scale stays 1; only the shift (bias) learns
    return norm


def known_archs() -> list[str]:
    return [STUDENT_ARCH, *TEACHER_ARCHS]


def build_model(arch: str, num_classes: int = 10, stem: str | None = None) -> nn.Module:
    """An untrained model by name: `build_model("resnet101", 10, stem="cifar")`.

    `stem` applies to ResNets only (None: the default, cifar); other archs refuse one.
    """
    if not is_resnet(arch) and stem is not None:
        raise ModelError(f"Only ResNets have a stem choice; {arch} has none.")
    if arch == STUDENT_ARCH:
        return SmallCNN(num_classes)
    if arch == CIFARNET_ARCH:
        return CifarNet(num_classes)
    builder, _ = _resnet_entry(arch)
    model = builder(weights=None)
    _fit_resnet(model, num_classes, stem or DEFAULT_STEM)
    return model


def build_teacher(
    arch: str = DEFAULT_TEACHER_ARCH,
    num_classes: int = 10,
    init: str = "scratch",
    weights_file: str | Path | None = None,
    stem: str | None = None,
) -> nn.Module:
    """A teacher with a fresh `num_classes` head.

    `init="scratch"`: random weights. `init="imagenet"` (ResNets): torchvision's ImageNet weights,
    taken from `weights_file` when given, else through torchvision's weights API and its cache
    (this needs internet once). `init="file"`: an ImageNet-shaped state_dict from `weights_file`.
    With the cifar stem, every ImageNet weight loads except conv1's: its 7x7 stride-2 kernel does
    not fit the 3x3 stride-1 stem, which starts fresh.
    """
    if init not in TEACHER_INITS:
        raise ModelError(
            f"Unknown initialisation {init!r}; choose one of {', '.join(TEACHER_INITS)}."
        )
    if init == "scratch":
        return build_model(arch, num_classes, stem)
    if not is_resnet(arch):
        raise ModelError(f"{arch} has no ImageNet weights; train it with --init scratch.")
    builder, weights_enum_name = _resnet_entry(arch)
    stem = stem or DEFAULT_STEM
    if init == "file" and weights_file is None:
        raise ModelError("Initialisation 'file' needs a weights file (--weights-file PATH).")
    if weights_file is not None:
        model = build_model(arch, num_classes, stem)
        # strict on the backbone; the head stays fresh, so the file's fc (any size or none) is
        # not needed
        model.load_state_dict(_read_backbone_state(Path(weights_file), model, arch), strict=False)
        return model
    model = _download_imagenet(builder, arch, weights_enum_name)
    _fit_resnet(model, num_classes, stem)
    return model


def _fit_resnet(model: nn.Module, num_classes: int, stem: str) -> None:
    """Give a torchvision ResNet the asked stem and a fresh `num_classes` head, in place."""
    if stem not in STEMS:
        raise ModelError(f"Unknown stem {stem!r}; choose one of {', '.join(STEMS)}.")
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
    model.fc = nn.Linear(model.fc.in_features, num_classes)


def _resnet_entry(arch: str) -> tuple[Callable[..., nn.Module], str]:
    if arch not in RESNET_ARCHS:
        raise ModelError(f"Unknown architecture {arch!r}; known: {', '.join(known_archs())}.")
    return RESNET_ARCHS[arch]


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


def _read_backbone_state(path: Path, model: nn.Module, arch: str) -> dict[str, torch.Tensor]:
    """The file's backbone weights for `model`: every tensor but fc's, names and shapes exact.

    An ImageNet-shaped file given to a cifar-stem model loads all but its 7x7 conv1.
    """
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
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    backbone = {k: v for k, v in state.items() if not str(k).startswith("fc.")}
    conv1 = backbone.get("conv1.weight")
    if isinstance(conv1, torch.Tensor) and conv1.shape[-1] != expected["conv1.weight"].shape[-1]:
        del backbone["conv1.weight"], expected["conv1.weight"]  # the other stem's: start fresh
    if set(backbone) != set(expected) or any(
        not isinstance(backbone[k], torch.Tensor) or backbone[k].shape != v.shape
        for k, v in expected.items()
    ):
        raise ModelError(f"Weights file {path} does not hold {arch} weights.")
    return backbone
