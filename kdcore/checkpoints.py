"""Checkpoint files: atomic writes, safe reads (`weights_only=True`), metadata to rebuild a model.

A checkpoint is a plain dict of tensors, strings and numbers:
`{"format": "kdcore-checkpoint", "version": 1, "arch": ..., "stem": ..., "num_classes": ...,
"classes": [...], "state_dict": {...}, "meta": {...}}`, so `weights_only=True` loads it and
nothing in it runs code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "kdcore-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and the reason."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` to a temporary file beside `path`, then rename: no reader sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    arch: str,
    classes: tuple[str, ...] | list[str],
    meta: dict[str, Any] | None = None,
    stem: str | None = None,
    train_state: dict[str, Any] | None = None,
) -> None:
    """`stem`: a ResNet's stem ("cifar" or "imagenet"); None for other architectures.
    `train_state`: what continuing the training needs (`kdcore.engine.fit`'s `resume`)."""
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "stem": stem,
        "num_classes": len(classes),
        "classes": list(classes),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint dict, checked; CheckpointError for a missing, corrupt or foreign file.

    `mmap=True` maps the weights instead of reading them: cheap when only the metadata (arch,
    classes, meta) is wanted.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        raise CheckpointError(
            f"Checkpoint {path} is corrupt, truncated or not a safe PyTorch file: {error}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a kdcore checkpoint.")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}; "
            f"this kdcore reads version {VERSION}."
        )
    classes, meta = payload.get("classes"), payload.get("meta", {})
    if not (isinstance(classes, list) and all(isinstance(name, str) for name in classes)):
        raise CheckpointError(f"{path} does not list its classes.")
    if payload.get("num_classes") != len(classes):
        raise CheckpointError(
            f"{path} is inconsistent: {payload.get('num_classes')} outputs, {len(classes)} classes."
        )
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has damaged metadata.")
    return payload


def checkpoint_role(payload: dict[str, Any]) -> str | None:
    """The role of the run that saved a checkpoint ("teacher", "student", "distill"), if known."""
    role = payload.get("meta", {}).get("role")
    return role if isinstance(role, str) else None


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode."""
    from kdcore.models import (
        CIFARNET_ARCH,
        LEGACY_STEM,
        ModelError,
        build_model,
        is_resnet,
    )

    payload = read_checkpoint(path)
    try:
        # ResNets saved before stems were a choice carry no "stem": they had torchvision's
        stem = payload.get("stem", LEGACY_STEM if is_resnet(payload["arch"]) else None)
        model = build_model(payload["arch"], payload["num_classes"], stem)
        if payload["arch"] == CIFARNET_ARCH and "features.0.weight" in payload["state_dict"]:
            raise CheckpointError(
                f"Checkpoint {path} holds the first CifarNet (a 3x3 stem, no whitening layer), "
                "which this kdcore no longer builds; train the teacher again with --arch cifarnet."
            )
        model.load_state_dict(payload["state_dict"], strict=True)
    except (ModelError, RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"Checkpoint {path} does not fit its architecture: {error}"
        ) from error
    return model.to(device).eval(), payload
