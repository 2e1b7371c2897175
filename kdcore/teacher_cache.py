"""Teacher outputs stored per augmented view, reused by every T/alpha run.

The view of image `i` in epoch `e` is a pure function of `(seed, e, i)` (see `kdcore.augment`), so
the teacher's raw logits for it can be computed once and stored by epoch and image index. A later
distillation from the same teacher on the same data, subset and seed, at any temperature and any
alpha, reads them back and runs no teacher forward pass. Raw logits are stored, so any T applies.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from kdcore.augment import check_teacher_tta, epoch_views, train_batch
from kdcore.checkpoints import atomic_torch_save
from kdcore.engine import autocast_for, prepare_model
from kdcore.files import file_digest

CACHE_FOLDER = "teacher_cache"
LOCK_POLL_SECONDS = 0.2  # how often a run waiting for another's teacher outputs looks again


def cache_dir_for(
    teacher_checkpoint: str | Path,
    data_fingerprint: str,
    val_split: int,
    images: int,
    seed: int,
    tta: str = "off",
) -> Path:
    """Where one teacher's outputs on one schedule of training views live: beside its checkpoint.

    The views depend on the training images (the source, the validation split held out of it,
    their number) and the seed; the outputs also on the teacher's test-time augmentation `tta`.
    """
    checkpoint = Path(teacher_checkpoint)
    held_out = f"-val{val_split}" if val_split else ""  # keys of earlier runs stay valid
    averaged = f"-{tta}" if tta != "off" else ""
    data_key = f"{data_fingerprint}{held_out}-n{images}-seed{seed}{averaged}"
    folder = f"{checkpoint.stem}-{file_digest(checkpoint)}-{data_key}"
    return checkpoint.parent / CACHE_FOLDER / folder


def split_logits_file(
    teacher_checkpoint: str | Path, data_fingerprint: str, split: str = "test"
) -> Path:
    """Where a teacher's logits on a held-out split are kept, for every student evaluated against
    it: the test split, or a validation split named by its size (`"val5000"`)."""
    checkpoint = Path(teacher_checkpoint)
    name = f"{split}-{checkpoint.stem}-{file_digest(checkpoint)}-{data_fingerprint}.pt"
    return checkpoint.parent / CACHE_FOLDER / name


def cached_epoch_files(teacher_checkpoint: str | Path) -> list[Path]:
    """Every stored epoch of this teacher's outputs, whatever the data and seed."""
    return sorted((Path(teacher_checkpoint).parent / CACHE_FOLDER).glob("*/epoch-*.pt"))


class TeacherOutputs:
    """Teacher logits for each epoch's views, from the cache or computed (and then stored).

    >>> outputs = TeacherOutputs(teacher, train.images, seed=0, cache_dir=None)
    >>> logits = outputs.epoch_logits(0, threading.Event(), lambda done, total: None)  # (N, C)

    `tta="flip"`: each view's logits are the mean of the teacher's on the view and on its mirror
    (the teacher's flip test-time augmentation, at twice the teacher's cost).
    """

    def __init__(
        self,
        teacher: nn.Module,
        images: torch.Tensor,
        seed: int,
        cache_dir: str | Path | None,
        device: torch.device | None = None,
        batch_size: int = 500,
        classes: int
        | None = None,  # the teacher's outputs; a stored entry of another width is redone
        tta: str = "off",
    ) -> None:
        check_teacher_tta(tta)
        self.tta = tta
        self.device = device or torch.device("cpu")
        self.classes = classes
        self.teacher = prepare_model(teacher, self.device).eval()
        self.images, self.seed, self.batch_size = images, seed, batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.epochs_from_cache = 0
        self.epochs_computed = 0
        self.forward_batches = 0
        self.seconds_computing = 0.0
        self.seconds_reading = 0.0
        self.seconds_saved = 0.0  # teacher time the cached epochs cost when they were computed

    def epoch_logits(
        self,
        epoch: int,
        stop_event: threading.Event,
        on_progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> torch.Tensor | None:
        """(N, C) float32 logits of epoch `epoch`'s views; None when stopped before the end."""
        started = time.perf_counter()
        cached = self._read(epoch)
        if cached is None and self.cache_dir is not None:
            # one process computes an epoch; others wanting it (parallel trials) wait, then read
            with self._computing(epoch, stop_event) as ours:
                if not ours:
                    return None  # stopped while another process computed it
                cached = self._read(epoch)
                if cached is None:
                    return self._compute_and_store(epoch, stop_event, on_progress, started)
        if cached is None:
            return self._compute_and_store(epoch, stop_event, on_progress, started)
        self.epochs_from_cache += 1
        self.seconds_reading += time.perf_counter() - started
        self.seconds_saved += cached["seconds"]
        return cached["logits"]

    def _compute_and_store(self, epoch, stop_event, on_progress, started) -> torch.Tensor | None:
        logits = self.compute(epoch, stop_event, on_progress)
        if logits is None:
            return None
        seconds = time.perf_counter() - started
        if self.cache_dir is not None:
            atomic_torch_save({"logits": logits, "seconds": seconds}, self._epoch_file(epoch))
        self.epochs_computed += 1
        self.seconds_computing += seconds
        return logits

    @contextlib.contextmanager
    def _computing(self, epoch: int, stop_event: threading.Event) -> Iterator[bool]:
        """Hold the epoch's lock file (across processes); yields False if stopped while waiting."""
        path = self._epoch_file(epoch).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if stop_event.is_set():
                        yield False
                        return
                    time.sleep(LOCK_POLL_SECONDS)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def summary(self) -> dict[str, float]:
        """Counters for the run's status: what came from the cache and the time it saved."""
        return {
            "epochs_from_cache": self.epochs_from_cache,
            "epochs_computed": self.epochs_computed,
            "seconds_computing": round(self.seconds_computing, 2),
            "seconds_reading": round(self.seconds_reading, 2),
            "seconds_saved": round(max(0.0, self.seconds_saved - self.seconds_reading), 2),
        }

    @torch.inference_mode()
    def compute(
        self,
        epoch: int,
        stop_event: threading.Event,
        on_progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> torch.Tensor | None:
        """Run the teacher over every image's view of `epoch`, in index order."""
        views = epoch_views(len(self.images), self.seed, epoch)
        chunks, total = [], len(self.images)
        for start in range(0, total, self.batch_size):
            if stop_event.is_set():
                return None
            indices = torch.arange(start, min(start + self.batch_size, total))
            inputs = train_batch(self.images[indices].to(self.device), views.select(indices))
            with autocast_for(self.device):
                logits = self.teacher(inputs).float()
                if self.tta == "flip":
                    logits = (logits + self.teacher(inputs.flip(3)).float()) / 2
            chunks.append(logits.cpu())
            self.forward_batches += 1
            on_progress(int(indices[-1]) + 1, total)
        return torch.cat(chunks)  # (N, C)

    def _epoch_file(self, epoch: int) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"epoch-{epoch:04d}.pt"

    def _read(self, epoch: int) -> dict | None:
        """A stored epoch that passes cheap checks, else None: damaged entries are recomputed."""
        if self.cache_dir is None or not self._epoch_file(epoch).is_file():
            return None
        try:
            entry = torch.load(self._epoch_file(epoch), map_location="cpu", weights_only=True)
            logits, seconds = entry["logits"], entry.get("seconds", 0.0)
        except Exception:
            return None
        if not (plausible_logits(logits, len(self.images), self.classes) and _is_time(seconds)):
            return None
        return {"logits": logits, "seconds": float(seconds)}


def plausible_logits(logits: object, images: int, classes: int | None = None) -> bool:
    """Cheap invariants of stored teacher logits: an (images, classes) float tensor, finite,
    and not one value throughout (what a broken teacher or a zeroed file gives)."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        return False
    if logits.dim() != 2 or logits.shape[0] != images or logits.shape[1] < 2:
        return False
    if classes is not None and logits.shape[1] != classes:
        return False
    return bool(torch.isfinite(logits).all()) and bool(logits.max() > logits.min())


def _is_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
