"""What every page shares: the process-wide run manager, the data source, cached data and models.

The manager lives in `st.cache_resource`, so every browser tab and every rerun sees the same runs;
`st.session_state` holds only this browser's choices (namespaced keys such as `distill.alpha`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from kdcore.checkpoints import load_model
from kdcore.data import CIFAR10, DEFAULT_CIFAR10_ROOT, SYNTHETIC, ImageSet, load_split
from kdcore.manager import RunManager, default_training_threads

DATA_SOURCE_KEY = "app.data_source"  # the source new runs use (a string, as in RunSpec.data)
POLL_SECONDS = 1.0  # how often live panels ask the manager for news


def checkpoints_root() -> Path:
    """Where run folders live: $KDCORE_CHECKPOINTS, else ./checkpoints."""
    return Path(os.environ.get("KDCORE_CHECKPOINTS") or "checkpoints")


@st.cache_resource(show_spinner=False)
def _manager_for(root: str) -> RunManager:
    return RunManager(Path(root), training_threads=default_training_threads())


def get_manager() -> RunManager:
    """The one RunManager of this server process for the current checkpoints root."""
    return _manager_for(str(checkpoints_root().resolve()))


def default_data_source() -> str:
    """$KDCORE_DATA, else CIFAR-10 when data/cifar10 holds it, else the synthetic offline set."""
    if os.environ.get("KDCORE_DATA"):
        return os.environ["KDCORE_DATA"]
    if (DEFAULT_CIFAR10_ROOT / "cifar-10-batches-py").is_dir():
        return CIFAR10
    return SYNTHETIC


def data_source() -> str:
    """The data source this browser chose (the sidebar sets it)."""
    return st.session_state.get(DATA_SOURCE_KEY) or default_data_source()


def init_state(defaults: Mapping[str, Any]) -> None:
    """Set a page's session keys once (init guard); widgets then take their value from the key.

    Page widgets pass `persist_state="session"`, so a choice survives a visit to another page.
    """
    for key, default in defaults.items():
        st.session_state.setdefault(key, default)


def keep_choice(key: str, options: list[Any]) -> None:
    """Point `key` at the first option when its stored value is no longer among `options`."""
    if options and st.session_state.get(key) not in options:
        st.session_state[key] = options[0]


@st.cache_resource(show_spinner="Loading images...", max_entries=4)
def cached_split(source: str, split: str) -> ImageSet:
    """A decoded split, shared by every session (tensors are read-only here)."""
    return load_split(source, split)


@st.cache_resource(show_spinner="Loading model...", max_entries=8)
def _cached_model(path: str, modified_ns: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    return load_model(path)


def cached_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A checkpoint's model in eval mode, reloaded when the file changes; CheckpointError if bad."""
    modified = path.stat().st_mtime_ns if path.is_file() else 0
    return _cached_model(str(path), modified)


def device_summary() -> str:
    """One line: CPU cores, training threads, GPU (or none)."""
    cores = os.cpu_count() or 1
    threads = default_training_threads()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (runs on the CPU)"
    return f"{cores} CPU cores ({threads} for training, the rest for this page) · {gpu}"
