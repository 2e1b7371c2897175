"""Runs: a frozen `RunSpec` -> a run folder under `checkpoints/` -> a trained model.

A run folder holds `config.json` (the spec), `status.json` (`kdcore.status`), `metrics.jsonl`
(one line per epoch, flushed as it happens), `batches.csv` (`kdcore.batch_log`), `output.log` (what
a dashboard-started run printed), the weights `best.pt` and `last.pt`, and `stop-requested` once
someone asked the run to stop. `kdcore.execute.execute_run` trains a run's folder; this module
creates, finds and lists them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdcore.augment import STUDY_VIEWS, check_teacher_tta, describe_views
from kdcore.checkpoints import CheckpointError, checkpoint_role, read_checkpoint
from kdcore.data import (
    DataError,
    list_source,
    require_same_classes,
    same_source,
    source_classes,
    source_status,
)
from kdcore.engine import TrainConfig
from kdcore.files import atomic_write_text
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
from kdcore.status import (
    STALE_AFTER_SECONDS,
    RunStatus,
    StatusError,
    read_status,
    write_status,
)

ROLES = ("teacher", "student", "distill")
ROLE_NAMES = {"teacher": "teacher", "student": "student-alone", "distill": "distilled student"}
DEFAULT_ROOT = Path("checkpoints")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
STOP_FILE = "stop-requested"
METRICS_FILE = "metrics.jsonl"
TRAIN_CONFIG_KEY = "train_config"


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
    teacher_tta: str = "off"  # distill: "flip" averages the teacher on a view and its mirror
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
    if spec.init == "file" and not spec.weights_file:
        raise RunError("Initialising from a file needs the file: give --weights-file.")
    if spec.init == "file" and not Path(spec.weights_file).is_file():
        raise RunError(f"Weights file {spec.weights_file} does not exist.")
    if spec.train_subset is not None and spec.train_subset < 1:
        raise RunError(f"Training subset must hold at least 1 image (got {spec.train_subset}).")
    if spec.val_split < 0:
        raise RunError(f"The validation split cannot be negative (got {spec.val_split}).")
    if spec.teacher_tta != "off" and spec.role != "distill":
        raise RunError("Only a distillation reads a teacher: teacher_tta is for distill runs.")
    try:
        spec.train_config()
        check_distillation_settings(spec.temperature, spec.alpha)
        check_teacher_tta(spec.teacher_tta)
    except ValueError as error:
        raise RunError(str(error)) from error
    status = source_status(spec.data)
    if not status.ready and status.kind != "cifar10":
        raise RunError(status.message)
    try:
        listing = list_source(spec.data) if status.ready else None
        classes = listing.classes["train"] if listing else None
        if listing:
            require_same_classes(classes, listing.classes["test"], "train/", "test/")
            check_training_size(spec, listing.images["train"])
        if spec.role == "distill":
            check_teacher(spec, classes, root)
    except DataError as error:
        raise RunError(str(error)) from error


def check_training_size(spec: RunSpec, images: int) -> None:
    """RunError when the validation split or the subset asks for more images than there are."""
    if spec.val_split >= images:
        raise RunError(
            f"A validation split of {spec.val_split} images must leave training images; "
            f"{spec.data} holds {images}."
        )
    available = images - spec.val_split
    if spec.train_subset is not None and spec.train_subset > available:
        held_out = f" left after the validation split of {spec.val_split}" if spec.val_split else ""
        raise RunError(
            f"Training subset {spec.train_subset} is larger than the {available} training "
            f"images{held_out}; ask for at most {available}, or for none to train on all."
        )


def check_teacher(
    spec: RunSpec, classes: tuple[str, ...] | None, root: Path = DEFAULT_ROOT
) -> None:
    """RunError unless `spec.teacher` is a teacher's checkpoint for the classes of `spec.data`."""
    if not spec.teacher:
        raise RunError("Distillation needs a teacher: a finished teacher run or a checkpoint.")
    payload = checkpoint_header(teacher_checkpoint(spec.teacher, root))
    role = checkpoint_role(payload)
    if role not in (None, "teacher"):
        raise RunError(
            f"{spec.teacher} is a {ROLE_NAMES.get(role, role)} run, not a teacher; "
            "distil from a teacher run."
        )
    if classes is not None:
        require_same_classes(payload["classes"], classes, f"teacher {spec.teacher}", spec.data)


def teacher_data_warning(spec: RunSpec, root: Path = DEFAULT_ROOT) -> str | None:
    """A sentence when a distillation's teacher learned its (same) classes from other data."""
    try:
        payload = checkpoint_header(teacher_checkpoint(spec.teacher or "", root))
    except RunError:
        return None
    teacher_spec = payload["meta"].get("spec")
    teacher_data = teacher_spec.get("data") if isinstance(teacher_spec, dict) else None
    if not isinstance(teacher_data, str) or same_source(teacher_data, spec.data):
        return None
    with contextlib.suppress(DataError):  # other classes are refused by `validate`, not warned of
        if tuple(payload["classes"]) == source_classes(spec.data)["train"]:
            return (
                f"The teacher was trained on {teacher_data}, this run uses {spec.data}: the "
                "classes are the same, but the images come from another source."
            )
    return None


def teacher_views_note(teacher: RunRecord) -> str | None:
    """A sentence when a teacher learnt on other crops than the study's, which distillation shows
    it (as its students see them): there it can be right less often than on the test split."""
    try:
        config = teacher.train_config()
    except RunError:
        return None
    padding, _, fill = STUDY_VIEWS
    if (config.crop_padding, config.crop_fill) == (padding, fill):
        return None
    return (
        f"This teacher learnt on {describe_views(config.crop_padding, config.crop_fill)}; "
        f"distillation shows it the study's views ({describe_views(padding, fill)}), as its "
        "students see them, and it can be right less often there than on the test split. "
        "Compare runs draws, dotted, how often it was right on them."
    )


def checkpoint_header(path: Path) -> dict[str, Any]:
    """A checkpoint's metadata (arch, classes, meta; the weights mapped, not read); RunError."""
    try:
        return read_checkpoint(path, mmap=True)
    except CheckpointError as error:
        raise RunError(str(error)) from error


def teacher_checkpoint(teacher: str, root: Path = DEFAULT_ROOT) -> Path:
    """A teacher run id (its best weights) or a checkpoint path -> an existing checkpoint file."""
    return checkpoint_of(teacher, root, what="Teacher")


def checkpoint_of(
    run_or_path: str, root: Path = DEFAULT_ROOT, which: str = "best", what: str = ""
) -> Path:
    """A run id (its `which`.pt) or a checkpoint path -> an existing checkpoint file.

    `what` ("Teacher", ...) starts the error messages; they speak of a plain run without it.
    """
    path = Path(run_or_path)
    if path.suffix == ".pt":
        if not path.is_file():
            raise RunError(
                f"{what + ' checkpoint' if what else 'Checkpoint'} {path} does not exist."
            )
        return path
    folder = run_dir(run_or_path, root)
    if not (folder / "config.json").is_file():
        raise RunError(f"No run {run_or_path!r} in {root}.")
    checkpoint = folder / f"{which}.pt"
    if not checkpoint.is_file():
        run = f"{what} run" if what else "Run"
        raise RunError(f"{run} {run_or_path} has no weights yet (no {which}.pt).")
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
    config = {"id": run_id, "created_at": time.time(), **spec.to_dict()}
    # the recipe as resolved now, so that the run trains (and resumes) with it whatever changes
    config[TRAIN_CONFIG_KEY] = dataclasses.asdict(spec.train_config())
    write_json(folder / "config.json", config)
    return run_id


def recorded_train_config(folder: Path, spec: RunSpec) -> TrainConfig:
    """The training settings config.json recorded when the run was made; the spec's recipe for a
    run made before they were recorded."""
    return _train_config_from(read_json(folder / "config.json").get(TRAIN_CONFIG_KEY), spec)


def _train_config_from(recorded: Any, spec: RunSpec) -> TrainConfig:
    if recorded is None:
        return spec.train_config()
    known = TrainConfig.__dataclass_fields__
    try:
        return TrainConfig(**{k: v for k, v in recorded.items() if k in known})
    except (TypeError, ValueError, AttributeError) as error:
        raise RunError(f"config.json's {TRAIN_CONFIG_KEY} cannot be used: {error}") from error


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
    """Replace a JSON file atomically (a temporary file per writer, then a rename)."""
    atomic_write_text(path, json.dumps(payload, indent=2))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_metrics(folder: Path) -> list[dict[str, float]]:
    """The epoch rows written so far. A line that is not a whole row (half written, damaged, or
    without a numeric epoch and test accuracy) is skipped."""
    rows = []
    try:
        lines = (folder / METRICS_FILE).read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and all(_is_number(row.get(k)) for k in ("epoch", "test_acc")):
            rows.append(row)
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    readable: bool = True  # False: its config.json is damaged; shown, never trained or loaded
    recorded_recipe: dict[str, Any] | None = None  # config.json's train_config, as written

    def train_config(self) -> TrainConfig:
        """The settings it trained with (see recorded_train_config), from what was read once."""
        return _train_config_from(self.recorded_recipe, self.spec)

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
    """A run by id, always: a folder whose config cannot be read comes back as an unreadable run
    (status failed, the file and the reason as its error), a status.json that cannot be read as a
    failed run that says why."""
    folder = run_dir(run_id, root)
    if not (folder / "config.json").is_file():
        raise RunError(f"No run {run_id!r} in {root}.")
    try:
        spec, created_at, recipe = _read_config(folder / "config.json")
    except (OSError, ValueError, TypeError) as error:
        return _unreadable(run_id, folder, f"config.json: {error}")
    try:
        status = read_status(folder).observed()
    except StatusError as error:
        status = RunStatus(state="failed", phase="failed", error=str(error))
    if not status.active:
        remove_stale_temporaries(folder)
    metrics = tuple(read_metrics(folder))
    return RunRecord(run_id, folder, spec, status, created_at, metrics, recorded_recipe=recipe)


def remove_stale_temporaries(folder: Path, min_age_s: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Delete the half-written files (`.best.pt.*.tmp`, ...) a killed process left in a run folder.

    Only files untouched for `min_age_s`: a write still under way is never disturbed.
    """
    removed = []
    for temporary in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - temporary.stat().st_mtime >= min_age_s:
                temporary.unlink()
                removed.append(temporary)
    return removed


def _read_config(path: Path) -> tuple[RunSpec, float, dict[str, Any] | None]:
    try:
        config = json.loads(path.read_bytes())
    except ValueError:
        raise ValueError("not valid JSON (damaged or half written)") from None
    if not isinstance(config, dict):
        raise ValueError("not a JSON object")
    spec = RunSpec.from_dict(config)
    if spec.role not in ROLES:
        raise ValueError(f"unknown role {spec.role!r}")
    for name, kinds in FIELD_TYPES.items():
        value = getattr(spec, name)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise ValueError(f"{name} is {value!r}, not a {kinds[0].__name__}")
    created_at = config.get("created_at", 0.0)
    if not _is_number(created_at):
        raise ValueError(f"created_at is {created_at!r}, not a time")
    return spec, float(created_at), config.get(TRAIN_CONFIG_KEY)


FIELD_TYPES = {  # what a config's fields must hold for the run to be shown and used
    "data": (str,), "arch": (str,), "stem": (str,), "teacher": (str,), "label": (str,),
    "epochs": (int,), "seed": (int,), "batch_size": (int,), "train_subset": (int,),
    "val_split": (int,), "temperature": (float, int), "alpha": (float, int),
    "lr": (float, int),
}  # fmt: skip


def _unreadable(run_id: str, folder: Path, why: str) -> RunRecord:
    status = RunStatus(state="failed", phase="unreadable", error=f"unreadable: {why}")
    spec = RunSpec(role="student", label="unreadable")
    return RunRecord(run_id, folder, spec, status, folder.stat().st_mtime, (), readable=False)


def list_runs(root: Path = DEFAULT_ROOT) -> list[RunRecord]:
    """Every run folder under `root`, newest first."""
    if not root.is_dir():
        return []
    records = []
    for folder in root.iterdir():
        if folder.is_dir() and (folder / "config.json").is_file():
            try:
                records.append(load_run(folder.name, root))
            except RunError:  # not a run id, or the folder went away meanwhile
                continue
            except (OSError, ValueError, TypeError) as error:  # shown, never hidden
                records.append(_unreadable(folder.name, folder, f"{type(error).__name__}: {error}"))
    return sorted(records, key=lambda record: record.created_at, reverse=True)
