"""Speed against the study's pipeline, each figure measured in the same run as its baseline.

The study's pipeline: torchvision `ImageFolder` + PIL transforms (flip, crop 32 pad 4, ToTensor,
Normalize 0.5) + `DataLoader(shuffle=True)`, NCHW tensors, measured with two loader workers and
in-process (`num_workers=0`); each ratio is taken against the faster of the two. Ours: uint8
tensors in memory, batched augmentation, channels_last, bf16 autocast where the CPU runs it
natively (see `kdcore.engine`). Same model (ResNet101 with torchvision's stem, as the study built
it), batch and optimiser.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kdcore.data import ImageSet, default_cache_dir, load_split, source_fingerprint, source_status
from kdcore.engine import Distillation, TrainConfig, build_optimizer, fit, pick_device
from kdcore.models import DEFAULT_TEACHER_ARCH, STUDENT_ARCH, build_model, is_resnet
from kdcore.runs import RunSpec
from kdcore.teacher_cache import TeacherOutputs

WARMUP_BATCHES = 3


def study_model(arch: str, num_classes: int) -> torch.nn.Module:
    """The model as the study built it: ResNets with torchvision's own (ImageNet) stem."""
    return build_model(arch, num_classes, "imagenet" if is_resnet(arch) else None)


def run_benchmarks(source: str, batches: int = 60, device: str = "auto") -> dict[str, Any]:
    """All figures of `python -m kdcore bench`, as one JSON-ready dict."""
    device_ = pick_device(device)
    batch_size = 128
    train, test = load_split(source, "train"), load_split(source, "test").subset(500)
    folder = image_folder_for(source)
    teacher_batches = max(6, batches // 4)

    study_student = {
        f"study_pipeline_{workers}_workers": study_pipeline_images_per_s(
            folder, STUDENT_ARCH, "student", batches, batch_size, workers
        )
        for workers in (2, 0)
    }
    ours_student = ours_images_per_s(
        train, test, STUDENT_ARCH, "student", batches, batch_size, device_
    )
    epochs = distillation_epochs(train, test, batches, batch_size, device_)
    study_teacher = study_pipeline_images_per_s(
        folder, DEFAULT_TEACHER_ARCH, "teacher", teacher_batches, batch_size
    )
    ours_teacher = ours_images_per_s(
        train, test, DEFAULT_TEACHER_ARCH, "teacher", teacher_batches, batch_size, device_
    )
    return {
        "device": str(device_),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "student_images_per_s": {**study_student, "ours": ours_student},
        "student_speedup_vs_study_pipeline": round(ours_student / max(study_student.values()), 2),
        "epoch_seconds": epochs,
        "distill_cached_over_student": round(epochs["distill_cached"] / epochs["student"], 3),
        "distill_online_over_student": round(epochs["distill_online"] / epochs["student"], 3),
        "teacher_images_per_s": {"study_pipeline": study_teacher, "ours": ours_teacher},
        "teacher_speedup_vs_study_pipeline": round(ours_teacher / study_teacher, 2),
    }


def study_pipeline_images_per_s(
    folder: Path, arch: str, role: str, batches: int, batch_size: int, workers: int = 2
) -> float:
    """Training images/s of the study's ImageFolder + PIL + DataLoader pipeline on the CPU."""
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(32, padding=4),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )
    dataset = datasets.ImageFolder(str(folder / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers
    )
    torch.manual_seed(0)
    model = study_model(arch, len(dataset.classes))
    optimizer = build_optimizer(model, _config(role, batch_size))
    model.train()
    seen, started = 0, 0.0
    for index, (images, labels) in enumerate(loader):
        if index == WARMUP_BATCHES:
            seen, started = 0, time.perf_counter()
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(labels)
        if index + 1 == WARMUP_BATCHES + batches:
            break
    return round(seen / (time.perf_counter() - started), 1)


def ours_images_per_s(
    train: ImageSet,
    test: ImageSet,
    arch: str,
    role: str,
    batches: int,
    batch_size: int,
    device: torch.device,
) -> float:
    """Training images/s of the engine on the study's model for `arch`, with the role's recipe."""
    torch.manual_seed(0)
    model = study_model(arch, len(train.classes))
    return engine_images_per_s(model, train, test, _config(role, batch_size), batches, device)


def engine_images_per_s(
    model: torch.nn.Module,
    train: ImageSet,
    test: ImageSet,
    config: TrainConfig,
    batches: int,
    device: torch.device,
) -> float:
    """Training images/s of `fit` on about `batches` batches of `train` (the epoch's own
    measurement, evaluation excluded), after a warm-up epoch of a few of them."""
    subset = train.subset((batches + WARMUP_BATCHES) * config.batch_size)
    warm_up = subset.subset(WARMUP_BATCHES * config.batch_size)
    fit(model, warm_up, test.subset(10), config, device=device)
    result = fit(model, subset, test.subset(10), config, device=device)
    return round(result.history[0]["images_per_s"], 1)


def best_of_turns(measures: dict[str, Callable[[], float]], turns: int = 2) -> dict[str, float]:
    """Each measure taken in turn, `turns` times over, and the best figure of each: taking them
    in turn spreads a shared machine's slow spells over all of them."""
    best = dict.fromkeys(measures, 0.0)
    for _ in range(turns):
        for name, measure in measures.items():
            best[name] = max(best[name], measure())
    return best


def distillation_epochs(
    train: ImageSet, test: ImageSet, batches: int, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Wall seconds of one epoch: student alone, distilled with the teacher online, from cache."""
    subset = train.subset(batches * batch_size)
    config = _config("distill", batch_size)
    teacher = study_model(DEFAULT_TEACHER_ARCH, len(train.classes))

    def epoch_seconds(distillation: Distillation | None) -> float:
        torch.manual_seed(0)
        started = time.perf_counter()
        fit(
            study_model(STUDENT_ARCH, len(train.classes)),
            subset,
            test.subset(10),
            config,
            distillation=distillation,
            device=device,
        )
        return round(time.perf_counter() - started, 2)

    epoch_seconds(None)  # warm-up
    seconds = {"student": epoch_seconds(None)}
    with tempfile.TemporaryDirectory() as cache_dir:
        outputs = TeacherOutputs(teacher, subset.images, config.seed, cache_dir, device)
        seconds["distill_online"] = epoch_seconds(Distillation(outputs))
        seconds["distill_cached"] = epoch_seconds(Distillation(outputs))
        assert outputs.epochs_from_cache == 1, "the second distillation must read the cache"
    return seconds


def image_folder_for(source: str) -> Path:
    """A train/<class>/ folder for ImageFolder: the source itself, its archive unpacked, or PNGs."""
    status = source_status(source)
    if status.kind == "folder" and status.ready:
        return Path(source)
    folder = default_cache_dir() / "folders" / source_fingerprint(source)
    if (folder / "train").is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent))
    if status.kind == "archive":
        with tarfile.open(source) as archive:
            archive.extractall(staging, filter="data")
        root = next(path.parent for path in staging.rglob("train") if path.is_dir())
    else:
        root = staging
        _write_pngs(load_split(source, "train"), root / "train")
    root.rename(folder)
    return folder


def _write_pngs(image_set: ImageSet, folder: Path) -> None:
    from PIL import Image

    for index, (image, label) in enumerate(zip(image_set.images, image_set.labels, strict=True)):
        class_folder = folder / image_set.classes[int(label)]
        class_folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(class_folder / f"{index:05d}.png")


def _config(role: str, batch_size: int) -> TrainConfig:
    return RunSpec(role=role, epochs=1, batch_size=batch_size).train_config()
