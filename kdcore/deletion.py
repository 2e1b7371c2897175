"""Deleting runs for good, and what relies on a run before it goes.

A teacher has dependants: the distilled runs it teaches and the sweeps that name it. A run being
trained, or a teacher whose students train, cannot be deleted; finished dependants are the
user's to weigh (the dashboard asks).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdcore.runs import DEFAULT_ROOT, RunError, list_runs, load_run, read_json, run_dir
from kdcore.sweep import SWEEPS_FOLDER


@dataclass(frozen=True)
class Dependants:
    """What relies on a teacher run: distilled runs taught by it, sweeps that name it."""

    runs: tuple[str, ...] = ()
    sweeps: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.runs or self.sweeps)


def dependants(run_id: str, root: Path = DEFAULT_ROOT) -> Dependants:
    """The distilled runs whose teacher is `run_id` (by id or by a checkpoint in its folder) and
    the sweeps under `root/sweeps` whose teacher it is.

        if dependants(teacher_id, root):  # ask before deleting the teacher
            ...
    """
    folder = run_dir(run_id, root)
    runs = tuple(
        record.run_id
        for record in list_runs(root)
        if record.run_id != run_id and _names_run(record.spec.teacher, run_id, folder)
    )
    sweeps = []
    for path in sorted((root / SWEEPS_FOLDER).glob("*/sweep.json")):
        spec = read_json(path).get("spec")
        if isinstance(spec, dict) and _names_run(spec.get("teacher"), run_id, folder):
            sweeps.append(path.parent.name)
    return Dependants(runs, tuple(sweeps))


def _names_run(teacher: Any, run_id: str, folder: Path) -> bool:
    """Whether a spec's `teacher` (a run id or a checkpoint path) is the run `run_id`."""
    if not isinstance(teacher, str) or not teacher:
        return False
    if teacher == run_id:
        return True
    path = Path(teacher)
    return path.suffix == ".pt" and path.resolve().parent == folder


def delete_runs(run_ids: Sequence[str], root: Path = DEFAULT_ROOT) -> list[str]:
    """Remove these run folders for good; returns the ids removed.

    Every id is checked before anything is removed (RunError, and nothing removed, when one is
    not a run folder under `root`, is queued or running, or teaches a run that is: stop that
    first). Only a real folder directly under `root` holding a config.json is ever removed, never
    a link. A teacher's finished dependants (`dependants`) do not stop it: ask the user first.
    Each folder is renamed away in one step, so a reader sees the whole run or none of it.

        delete_runs(["20250101-120000-student-smallcnn-ab12"], root)
    """
    folders = []
    active = [record for record in list_runs(root) if record.active]
    for run_id in dict.fromkeys(run_ids):  # each once, in the order given
        folder = run_dir(run_id, root)
        link = Path(root) / run_id
        if link.is_symlink() or not folder.is_dir() or not (folder / "config.json").is_file():
            raise RunError(f"No run {run_id!r} in {root}.")
        record = load_run(run_id, root)
        if record.active:
            raise RunError(f"Run {run_id} is {record.status}; stop it before deleting it.")
        learning = [r.run_id for r in active if _names_run(r.spec.teacher, run_id, folder)]
        if learning:  # its weights and teacher cache are read while they train
            raise RunError(
                f"Run {run_id} teaches {', '.join(learning)}, which is queued or running; "
                "stop it before deleting its teacher."
            )
        folders.append((run_id, folder))
    for run_id, folder in folders:
        doomed = folder.with_name(f".deleting-{run_id}-{secrets.token_hex(3)}")
        os.replace(folder, doomed)  # not a run id: listings skip it from here on
        shutil.rmtree(doomed, ignore_errors=True)
    return [run_id for run_id, _ in folders]
