"""What every page shares: the run queue, the data source, cached data and models.

Runs train in processes of their own and their folders are the truth; the queue (one per server,
in `st.cache_resource`) only starts queued folders and forwards stop requests.
`st.session_state` holds only this browser's choices (namespaced keys such as `distill.alpha`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from kdcore.batch_log import BatchLogTail
from kdcore.checkpoints import load_model
from kdcore.data import CIFAR10, DEFAULT_CIFAR10_ROOT, SYNTHETIC, ImageSet, load_split
from kdcore.engine import predict_logits
from kdcore.examples import example_pool
from kdcore.inference import model_device
from kdcore.runs import read_json, write_json
from kdcore.scheduler import RunQueue

DATA_SOURCE_KEY = "app.data_source"  # the source new runs use (a string, as in RunSpec.data)
SETTINGS_FILE = "dashboard.json"  # beside the runs: what the dashboard remembers across restarts
POLL_SECONDS = 1.0  # how often live panels read their run's folder
TABLE_POLL_SECONDS = 3.0  # how often tables of runs refresh while one is active


def checkpoints_root() -> Path:
    """Where run folders live: $KDCORE_CHECKPOINTS, else ./checkpoints."""
    return Path(os.environ.get("KDCORE_CHECKPOINTS") or "checkpoints")


@st.cache_resource(show_spinner=False)
def _queue_for(root: str) -> RunQueue:
    queue = RunQueue(Path(root))
    queue.start_polling(every=POLL_SECONDS)
    return queue


def get_queue() -> RunQueue:
    """The run queue of this server process for the current checkpoints root."""
    return _queue_for(str(checkpoints_root().resolve()))


@st.cache_resource(show_spinner=False, max_entries=64)
def batch_tail(folder: str) -> BatchLogTail:
    """A run's batch losses, read incrementally and shared by every tab that watches it."""
    return BatchLogTail(Path(folder))


def default_data_source() -> str:
    """$KDCORE_DATA, else the source last used here (kept beside the runs, so it survives a
    restart), else CIFAR-10 when data/cifar10 holds it, else the synthetic offline set."""
    if os.environ.get("KDCORE_DATA"):
        return os.environ["KDCORE_DATA"]
    remembered = _settings().get("data_source")
    if isinstance(remembered, str) and remembered:
        return remembered
    if (DEFAULT_CIFAR10_ROOT / "cifar-10-batches-py").is_dir():
        return CIFAR10
    return SYNTHETIC


def remember_data_source(source: str) -> None:
    """Keep `source` as the default for new sessions, also after a restart."""
    settings = _settings()
    if settings.get("data_source") != source:
        root = checkpoints_root()
        with contextlib.suppress(OSError):  # a read-only runs folder: remember nothing
            root.mkdir(parents=True, exist_ok=True)
            write_json(root / SETTINGS_FILE, {**settings, "data_source": source})


def _settings() -> dict[str, Any]:
    settings = read_json(checkpoints_root() / SETTINGS_FILE)
    return settings if isinstance(settings, dict) else {}


def data_source() -> str:
    """The data source this browser chose (the sidebar sets it)."""
    return st.session_state.get(DATA_SOURCE_KEY) or default_data_source()


def init_state(defaults: Mapping[str, Any]) -> None:
    """Set a page's session keys once (init guard); widgets then take their value from the key.

    Page widgets pass `persist_state="session"`, so a choice survives a visit to another page.
    """
    for key, default in defaults.items():
        if key not in st.query_params:  # a widget bound to the URL takes its value from there
            st.session_state.setdefault(key, default)


def set_widget_value(key: str, value: Any) -> None:
    """Give a widget's session key `value`, unless it already holds it.

    Each assignment makes the browser show the script's value, so assigning the same value on
    every run would undo a choice the user makes while a run is under way (a cleared picker
    coming back, say).
    """
    if key not in st.session_state or st.session_state[key] != value:
        st.session_state[key] = value


@st.cache_resource(show_spinner="Loading images...", max_entries=4)
def cached_split(source: str, split: str) -> ImageSet:
    """A decoded split, shared by every session (tensors are read-only here)."""
    return load_split(source, split)


@st.cache_resource(show_spinner="Loading model...", max_entries=8)
def _cached_model(path: str, modified_ns: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    return load_model(path)


def cached_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A checkpoint's model in eval mode, reloaded when the file changes; CheckpointError if bad."""
    return _cached_model(str(path), _modified_ns(path))


def _modified_ns(path: Path) -> int:
    """The file's modification time, a cache key that changes when the file is rewritten."""
    return path.stat().st_mtime_ns if path.is_file() else 0


@st.cache_resource(show_spinner="Predicting the example test images...", max_entries=16)
def _cached_pool_logits(path: str, modified_ns: int, source: str) -> torch.Tensor:
    model, _ = _cached_model(path, modified_ns)
    pool = example_pool(cached_split(source, "test"))
    return predict_logits(model, pool, model_device(model), batch_size=500).cpu()


def cached_pool_logits(path: Path, source: str) -> torch.Tensor:
    """A checkpoint's logits (N, C) for `source`'s example pool (kdcore.examples), computed once
    per checkpoint file and source."""
    return _cached_pool_logits(str(path), _modified_ns(path), source)


def device_summary() -> str:
    """One line: CPU cores, runs at once and their threads, GPU (or none)."""
    queue = get_queue()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (runs on the CPU)"
    return (
        f"{os.cpu_count() or 1} CPU cores · {queue.max_running} run(s) at once "
        f"($KDCORE_MAX_RUNS), {queue.threads} thread(s) each · {gpu}"
    )
