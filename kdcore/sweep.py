"""A T x alpha x seed sweep as one experiment: a folder naming ordinary runs, and their summary.

`checkpoints/sweeps/<id>/sweep.json` holds the grid and the run id of every trial; each trial is
an ordinary run folder, trained by `kdcore execute` like any other. The id is a digest of the
grid and the training settings, so the same command finds the same sweep again and resumes it:
finished trials are kept, the others get a fresh run. Distilled trials of one seed see the same
views, so the teacher's outputs are computed once per seed (`kdcore.teacher_cache` lets one
process compute an epoch while the others wait for it) and every later trial reads them.

Trials run through a `TrialRunner`: `run_trials` here (this machine's run queue, the default) or
`kdcore.cluster.RayExecutor.run_trials` (Ray tasks, on a local Ray or a cluster). Both take the
trials' run ids and return their records, so a sweep does not care which one trains it.

>>> spec = SweepSpec(teacher="RUN", temperatures=(1, 4), alphas=(0.5,), seeds=(0, 1))
>>> [trial.key for trial in spec.trials()]
['alone-s0', 'alone-s1', 'T1-a0.5-s0', 'T1-a0.5-s1', 'T4-a0.5-s0', 'T4-a0.5-s1']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdcore.evaluation import evaluate_run, read_evaluation
from kdcore.runs import (
    DEFAULT_ROOT,
    RunError,
    RunRecord,
    RunSpec,
    create_run,
    load_run,
    teacher_checkpoint,
    validate,
    write_json,
)

SWEEPS_FOLDER = "sweeps"
SWEEP_FILE = "sweep.json"
FIDELITY_METRICS = ("agreement", "kl_teacher_student", "ece")  # evaluate's, against the teacher
METRICS = ("test_acc", "val_acc", *FIDELITY_METRICS)  # what a cell summarises
TRAINING_FIELDS = (
    "data", "epochs", "train_subset", "val_split", "batch_size", "optimizer", "lr",
    "weight_decay", "label_smoothing",
)  # fmt: skip


TrialRunner = Callable[..., list[RunRecord]]
"""(run_ids, root, max_running=None, on_progress=..., poll_seconds=1.0) -> the trials' records,
once none of them is queued or running; `on_progress(records)` is called on every poll."""


class SweepError(RunError):
    """A sweep that cannot start or be read; the message says why."""


@dataclass(frozen=True)
class Trial:
    key: str  # "T2-a0.5-s0", or "alone-s0" for a student-alone baseline
    spec: RunSpec


@dataclass(frozen=True)
class SweepSpec:
    """The grid and the training settings every trial shares."""

    teacher: str
    temperatures: tuple[float, ...]
    alphas: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    baseline: bool = True
    training: dict[str, Any] = field(default_factory=dict)  # RunSpec fields in TRAINING_FIELDS
    label: str = ""

    @property
    def compared_on(self) -> str:
        """The accuracy its cells and their gains are read on: the validation split when the
        trials hold one out, so that no setting is chosen on the test split."""
        return "val_acc" if self.training.get("val_split") else "test_acc"

    @property
    def evaluated_on(self) -> str:
        """The split its cells' agreement, KL and ECE are read on, for the same reason."""
        return "validation" if self.compared_on == "val_acc" else "test"

    def trials(self) -> list[Trial]:
        """The baselines first (one per seed), then every T x alpha x seed."""
        trials = []
        if self.baseline:
            for seed in self.seeds:
                spec = self._run_spec(
                    role="student", seed=seed, label=f"{self.label} alone s{seed}"
                )
                trials.append(Trial(f"alone-s{seed}", spec))
        for temperature in self.temperatures:
            for alpha in self.alphas:
                for seed in self.seeds:
                    key = f"T{temperature:g}-a{alpha:g}-s{seed}"
                    spec = self._run_spec(
                        role="distill",
                        teacher=self.teacher,
                        temperature=temperature,
                        alpha=alpha,
                        seed=seed,
                        label=f"{self.label} {key}".strip(),
                    )
                    trials.append(Trial(key, spec))
        return trials

    def _run_spec(self, **fields: Any) -> RunSpec:
        return RunSpec(**{**self.training, **fields})

    @property
    def sweep_id(self) -> str:
        """The same grid and settings give the same id: rerunning the command resumes."""
        canonical = json.dumps(self.to_dict(), sort_keys=True)
        return "sweep-" + hashlib.sha256(canonical.encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SweepSpec:
        return cls(
            teacher=values["teacher"],
            temperatures=tuple(values["temperatures"]),
            alphas=tuple(values["alphas"]),
            seeds=tuple(values["seeds"]),
            baseline=values["baseline"],
            training=dict(values["training"]),
            label=values.get("label", ""),
        )


def validate_sweep(spec: SweepSpec, root: Path = DEFAULT_ROOT) -> None:
    """Refuse an impossible sweep before anything is created (every trial is checked)."""
    if not spec.temperatures or not spec.alphas or not spec.seeds:
        raise SweepError("The grid is empty: give at least one T, one alpha and one seed.")
    unknown = set(spec.training) - set(TRAINING_FIELDS)
    if unknown:
        raise SweepError(f"Unknown training settings: {', '.join(sorted(unknown))}.")
    try:
        teacher_checkpoint(spec.teacher, root)
    except RunError as error:
        raise SweepError(str(error)) from error
    for trial in spec.trials():
        try:
            validate(trial.spec, root)
        except RunError as error:
            raise SweepError(f"Trial {trial.key}: {error}") from error
    folder = sweep_dir(spec.sweep_id, root)
    if (folder / SWEEP_FILE).exists():
        read_sweep(folder)  # a sweep to resume whose sweep.json is corrupt: SweepError


def sweep_dir(sweep_id: str, root: Path = DEFAULT_ROOT) -> Path:
    return root / SWEEPS_FOLDER / sweep_id


def start_sweep(spec: SweepSpec, root: Path = DEFAULT_ROOT) -> tuple[str, dict[str, str]]:
    """Create (or resume) the sweep: a queued run for every trial not finished or under way.

    Returns the sweep id and {trial key: run id}.
    """
    validate_sweep(spec, root)
    folder = sweep_dir(spec.sweep_id, root)
    previous = read_sweep(folder) if (folder / SWEEP_FILE).exists() else {}
    runs = previous.get("trials", {})
    for trial in spec.trials():
        run_id = runs.get(trial.key)
        if run_id is None or not _keeps(run_id, root):
            runs[trial.key] = create_run(trial.spec, root)
    folder.mkdir(parents=True, exist_ok=True)
    created_at = previous.get("created_at", time.time())
    values = {"id": spec.sweep_id, "created_at": created_at, "spec": spec.to_dict(), "trials": runs}
    _write_sweep(folder, values)
    return spec.sweep_id, runs


def _keeps(run_id: str, root: Path) -> bool:
    """A trial's run is kept when it finished or is still queued or training."""
    try:
        record = load_run(run_id, root)
    except RunError:
        return False
    return record.status == "finished" or record.active


def read_sweep(folder: Path) -> dict[str, Any]:
    """A sweep's sweep.json; SweepError with the reason when it is missing or corrupt."""
    path = folder / SWEEP_FILE
    try:
        values = json.loads(path.read_text())
        SweepSpec.from_dict(values["spec"])
        if not isinstance(values["trials"], dict):
            raise TypeError("trials is not an object")
    except FileNotFoundError:
        raise SweepError(f"No sweep at {folder} (no {SWEEP_FILE}).") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SweepError(f"{path} is corrupt ({type(error).__name__}: {error}).") from error
    return values


def list_sweeps(root: Path = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """Every readable sweep under `root`, newest first (unreadable ones are left out)."""
    sweeps = []
    folder = root / SWEEPS_FOLDER
    for path in folder.iterdir() if folder.is_dir() else ():
        try:
            sweeps.append(read_sweep(path))
        except SweepError:
            continue
    return sorted(sweeps, key=lambda values: values.get("created_at", 0.0), reverse=True)


def _write_sweep(folder: Path, values: dict[str, Any]) -> None:
    write_json(folder / SWEEP_FILE, {**values, "updated_at": time.time()})


def run_trials(
    run_ids: Sequence[str],
    root: Path = DEFAULT_ROOT,
    max_running: int | None = None,
    on_progress: Callable[[list[RunRecord]], None] = lambda records: None,
    poll_seconds: float = 1.0,
) -> list[RunRecord]:
    """Train queued trials to the end on this machine's run queue; returns their records.

    The local `TrialRunner`; `kdcore.cluster.RayExecutor.run_trials` is the cluster's.
    """
    from kdcore.scheduler import RunQueue, default_max_running

    max_running = max_running or default_max_running()
    threads = max(1, (os.cpu_count() or 1) // max_running)  # no dashboard here to leave a core
    queue = RunQueue(root, max_running=max_running, threads=threads)
    while True:
        queue.tick()
        records = [load_run(run_id, root) for run_id in run_ids]
        on_progress(records)
        if not any(record.active for record in records):
            return records
        time.sleep(poll_seconds)


def evaluate_trials(spec: SweepSpec, runs: dict[str, str], root: Path = DEFAULT_ROOT) -> None:
    """Every finished trial gets an evaluation against the sweep's teacher (baselines too)."""
    for run_id in runs.values():
        record = load_run(run_id, root)
        if record.status != "finished":
            continue
        report = read_evaluation(record.folder)
        stale = report is None or report.get("teacher") != spec.teacher
        if stale or (spec.evaluated_on == "validation" and "validation" not in report):
            evaluate_run(run_id, root, teacher=spec.teacher)


def summarise(spec: SweepSpec, runs: dict[str, str], root: Path = DEFAULT_ROOT) -> dict[str, Any]:
    """Per cell (T, alpha) and for the baseline: mean and std over seeds of each metric, the
    gain over the baseline in the accuracy named by `compared_on`, and how many of the cell's
    trials have finished. Agreement, KL and ECE are read on the split named by `evaluated_on`."""
    reports: dict[str, dict[str, Any]] = {}
    for key, run_id in runs.items():
        try:
            record = load_run(run_id, root)
        except RunError:
            continue
        report = read_evaluation(record.folder)
        if report is not None:
            reports[key] = _cell_metrics(report, record, spec.evaluated_on)
    baseline = _cell([reports.get(f"alone-s{seed}") for seed in spec.seeds])
    accuracy, cells = spec.compared_on, []
    for temperature in spec.temperatures:
        for alpha in spec.alphas:
            keys = [f"T{temperature:g}-a{alpha:g}-s{seed}" for seed in spec.seeds]
            cell = _cell([reports.get(key) for key in keys])
            mean, reference = cell.get(f"{accuracy}_mean"), baseline.get(f"{accuracy}_mean")
            gain = mean - reference if mean is not None and reference is not None else None
            cells.append({"temperature": temperature, "alpha": alpha, **cell, "gain": gain})
    baseline_shown = baseline if spec.baseline else None
    return {
        "compared_on": accuracy,
        "evaluated_on": spec.evaluated_on,
        "baseline": baseline_shown,
        "cells": cells,
    }


def _cell_metrics(report: dict[str, Any], record: RunRecord, split: str) -> dict[str, Any]:
    """One trial's METRICS, all read on its final weights: test accuracy on the test split, and
    the validation accuracy its last epoch logged. Agreement, KL and ECE on `split`; left out
    when the evaluation predates validation figures, rather than mixed in from the test split."""
    last = record.metrics[-1] if record.metrics else {}
    metrics = {"test_acc": report.get("test_acc"), "val_acc": last.get("val_acc")}
    fidelity = report if split == "test" else report.get("validation", {})
    metrics |= {name: fidelity.get(name) for name in FIDELITY_METRICS}
    return {name: value for name, value in metrics.items() if value is not None}


def _cell(reports: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    done = [report for report in reports if report is not None]
    cell: dict[str, Any] = {"done": len(done), "of": len(reports)}
    for metric in METRICS:
        values = [report[metric] for report in done if metric in report]
        cell[f"{metric}_mean"] = statistics.fmean(values) if values else None
        cell[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
    return cell
