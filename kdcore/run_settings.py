"""Every setting a run trained with, and which of them tell a few runs apart.

A run's settings are its RunSpec (what it is) and the TrainConfig its config.json recorded (how
it trained, as the recipe resolved it then), so a recipe changed since does not rewrite them.

    differing_settings({"run a": settings_of(a), "run b": settings_of(b)})
    # ["lr", "seed"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kdcore.runs import RunRecord, recorded_train_config

# What the run is, in the order a reader asks; the distillation settings for distilled runs only
SPEC_SETTINGS = ("role", "data", "arch", "stem", "init", "weights_file", "train_subset",
                 "val_split", "teacher", "temperature", "alpha", "teacher_tta")  # fmt: skip
DISTILL_ONLY = frozenset({"teacher", "temperature", "alpha", "teacher_tta"})
IGNORED = frozenset({"eval_batch_size"})  # changes no number a run reports


def settings_of(record: RunRecord) -> dict[str, Any]:
    """The run's settings by name: its spec's, then its recorded training settings. RunError if
    its config.json cannot be read."""
    spec = record.spec
    settings = {
        name: getattr(spec, name)
        for name in SPEC_SETTINGS
        if spec.role == "distill" or name not in DISTILL_ONLY
    }
    config = dataclasses.asdict(recorded_train_config(record.folder, spec))
    settings.update({k: v for k, v in config.items() if k not in IGNORED})
    return settings


def differing_settings(runs: Mapping[str, Mapping[str, Any]], every: bool = False) -> list[str]:
    """The names of the settings whose value is not the same in every run (a run without one
    counts as None; `every`: all of them), in the order the runs give them."""
    names: list[str] = []
    for settings in runs.values():
        names += [name for name in settings if name not in names]
    values = {name: [settings.get(name) for settings in runs.values()] for name in names}
    return [name for name in names if every or any(v != values[name][0] for v in values[name])]
