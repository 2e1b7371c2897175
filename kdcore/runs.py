"""Runs: a frozen `RunSpec` -> a run folder under `checkpoints/` -> a trained model.

A run folder holds `config.json` (the spec), `status.json` (`kdcore.status`), `metrics.jsonl`
(one line per epoch, flushed as it happens), `batches.csv` (`kdcore.batch_log`), `output.log` (what
a dashboard-started run printed), the weights `best.pt` and `last.pt`, and `stop-requested` once
someone asked the run to stop. `kdcore.execute.execute_run` trains a run's folder; this module
creates, finds and lists them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdcore.data import source_status
from kdcore.engine import TrainConfig
from kdcore.losses import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, check_distillation_settings
from kdcore.models import (
    DEFAULT_STEM,
    DEFAULT_TEACHER_ARCH,
    LEGACY_STEM,
    STEMS,
    STUDENT_ARCH,
    TEACHER_ARCHS,
    TEACHER_INITS,
    is_resnet,
)
from kdcore.recipes import RECIPE_FIELDS, optimiser_defaults
from kdcore.status import RunStatus, StatusError, read_status, write_status

ROLES = ("teacher", "student", "distill")
DEFAULT_ROOT = Path("checkpoints")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
STOP_FILE = "stop-requested"


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; `None` optimiser fields take the recipe's defaults."""

    role: str
    data: str = "cifar10"
    arch: str | None = None
    stem: str | None = None  # ResNets only: "cifar" (the default) or "imagenet"
    init: str = "scratch"
    weights_file: str | None = None
    teacher: str | None = None  # a teacher run id, or a checkpoint path
    epochs: int = 10
    train_subset: int | None = None
    val_split: int = 0  # training images held out to choose settings and the best epoch on
    batch_size: int = 128
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA
    seed: int = 0
    label: str = ""

    @property
    def model_arch(self) -> str:
        return self.arch or (DEFAULT_TEACHER_ARCH if self.role == "teacher" else STUDENT_ARCH)

    @property
    def model_stem(self) -> str | None:
        """The ResNet stem this run builds (None for other archs)."""
        return (self.stem or DEFAULT_STEM) if is_resnet(self.model_arch) else None

    def train_config(self) -> TrainConfig:
        """The optimiser settings: those given here, the recipe's defaults for the rest."""
        defaults = optimiser_defaults(self.role, self.model_arch, self.model_stem, self.init)
        given = {
            name: getattr(self, name) for name in RECIPE_FIELDS if getattr(self, name) is not None
        }
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, seed=self.seed, **{**defaults, **given}
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in values.items() if k in known}
        if "stem" not in values:  # saved before stems were a choice: torchvision's stem
            fields["stem"] = LEGACY_STEM if values.get("role") == "teacher" else None
        spec = cls(**fields)
        return spec if spec.model_stem else dataclasses.replace(spec, stem=None)


class RunError(ValueError):
    """A run cannot start or be found; the message says why."""


def validate(spec: RunSpec, root: Path = DEFAULT_ROOT) -> None:
    """Refuse settings that make no sense, before anything starts."""
    if spec.role not in ROLES:
        raise RunError(f"Unknown role {spec.role!r}; use one of {', '.join(ROLES)}.")
    if spec.role == "teacher" and spec.model_arch not in TEACHER_ARCHS:
        raise RunError(
            f"Unknown teacher architecture {spec.model_arch!r}; known: {', '.join(TEACHER_ARCHS)}."
        )
    if spec.role != "teacher" and spec.model_arch != STUDENT_ARCH:
        raise RunError(f"Students are {STUDENT_ARCH}; got {spec.model_arch!r}.")
    if spec.stem is not None and not is_resnet(spec.model_arch):
        raise RunError(f"Only ResNets have a stem choice; {spec.model_arch} has none.")
    if spec.stem is not None and spec.stem not in STEMS:
        raise RunError(f"Unknown stem {spec.stem!r}; use {' or '.join(STEMS)}.")
    if spec.init not in TEACHER_INITS:
        raise RunError(f"Unknown initialisation {spec.init!r}; use {', '.join(TEACHER_INITS)}.")
    if spec.init != "scratch" and not is_resnet(spec.model_arch):
        raise RunError(f"{spec.model_arch} has no ImageNet weights; train it from scratch.")
    if spec.init == "file" and not (spec.weights_file and Path(spec.weights_file).is_file()):
        raise RunError(f"Weights file {spec.weights_file!r} does not exist.")
    if spec.train_subset is not None and spec.train_subset < 1:
        raise RunError(f"Training subset must hold at least 1 image (got {spec.train_subset}).")
    if spec.val_split < 0:
        raise RunError(f"The validation split cannot be negative (got {spec.val_split}).")
    try:
        spec.train_config()
        check_distillation_settings(spec.temperature, spec.alpha)
    except ValueError as error:
        raise RunError(str(error)) from error
    status = source_status(spec.data)
    if not status.ready and status.kind != "cifar10":
        raise RunError(status.message)
    if spec.role == "distill":
        if not spec.teacher:
            raise RunError("Distillation needs a teacher: a finished teacher run or a checkpoint.")
        teacher_checkpoint(spec.teacher, root)


def teacher_checkpoint(teacher: str, root: Path = DEFAULT_ROOT) -> Path:
    """A teacher run id (its best weights) or a checkpoint path -> an existing checkpoint file."""
    path = Path(teacher)
    if path.suffix == ".pt":
        if not path.is_file():
            raise RunError(f"Teacher checkpoint {path} does not exist.")
        return path
    checkpoint = run_dir(teacher, root) / "best.pt"
    if not checkpoint.is_file():
        raise RunError(f"Teacher run {teacher!r} has no weights yet (no best.pt).")
    return checkpoint


# --- run folders --------------------------------------------------------------------------------


def run_dir(run_id: str, root: Path = DEFAULT_ROOT) -> Path:
    """The folder of a run id; an id that could point outside `root` is refused."""
    if not RUN_ID_PATTERN.match(run_id) or run_id in (".", ".."):
        raise RunError(f"{run_id!r} is not a run id.")
    folder = (root / run_id).resolve()
    if folder.parent != root.resolve():
        raise RunError(f"{run_id!r} is not a run id.")
    return folder


def new_run_id(spec: RunSpec) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{spec.role}-{spec.model_arch}-{secrets.token_hex(2)}"


def create_run(spec: RunSpec, root: Path = DEFAULT_ROOT) -> str:
    """Validate `spec`, make its folder with config.json and a queued status; return its id."""
    validate(spec, root)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id(spec)
        folder = run_dir(run_id, root)
        try:
            folder.mkdir()  # the id is ours once its folder is
            break
        except FileExistsError:
            continue
    write_status(folder, RunStatus(state="queued"))  # before config.json, which makes it a run
    write_json(folder / "config.json", {"id": run_id, "created_at": time.time(), **spec.to_dict()})
    return run_id


def request_stop(folder: Path) -> None:
    """Ask the process training this run to stop at its next batch (it checks for this file)."""
    (folder / STOP_FILE).write_text(f"{time.time()}\n")


def stop_requested_at(folder: Path) -> float | None:
    """When a stop was requested (the file's time), or None."""
    try:
        return (folder / STOP_FILE).stat().st_mtime
    except OSError:
        return None


def write_json(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2))
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_metrics(folder: Path) -> list[dict[str, float]]:
    """The epoch rows written so far; a half-written last line is skipped."""
    rows = []
    try:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


# --- listing runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """A run as its folder tells it, read once."""

    run_id: str
    folder: Path
    spec: RunSpec
    run_status: RunStatus  # as observed: "running" only while its process lives
    created_at: float
    metrics: tuple[dict[str, float], ...]

    @property
    def status(self) -> str:
        return self.run_status.state

    @property
    def active(self) -> bool:
        return self.run_status.active

    @property
    def best_test_acc(self) -> float | None:
        return max((row["test_acc"] for row in self.metrics), default=None)

    @property
    def final_test_acc(self) -> float | None:
        return self.metrics[-1]["test_acc"] if self.metrics else None

    @property
    def progress(self) -> float:
        """Fraction done: to the batch while it trains, else by finished epochs."""
        if self.status == "running" and self.run_status.fraction_done is not None:
            return self.run_status.fraction_done
        return min(1.0, len(self.metrics) / max(1, self.spec.epochs))

    def checkpoint(self, which: str = "best") -> Path:
        return self.folder / f"{which}.pt"


def load_run(run_id: str, root: Path = DEFAULT_ROOT) -> RunRecord:
    """A run by id. A status.json that cannot be read shows as a failed run that says why."""
    folder = run_dir(run_id, root)
    config = read_json(folder / "config.json")
    if not config:
        raise RunError(f"No run {run_id!r} in {root}.")
    try:
        status = read_status(folder).observed()
    except StatusError as error:
        status = RunStatus(state="failed", phase="failed", error=str(error))
    return RunRecord(
        run_id,
        folder,
        RunSpec.from_dict(config),
        status,
        config.get("created_at", 0.0),
        tuple(read_metrics(folder)),
    )


def list_runs(root: Path = DEFAULT_ROOT) -> list[RunRecord]:
    """Every run folder under `root`, newest first."""
    if not root.is_dir():
        return []
    records = []
    for folder in root.iterdir():
        if folder.is_dir() and (folder / "config.json").is_file():
            try:
                records.append(load_run(folder.name, root))
            except (RunError, TypeError):
                continue
    return sorted(records, key=lambda record: record.created_at, reverse=True)
