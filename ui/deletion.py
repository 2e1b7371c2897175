"""Deleting runs from the dashboard: pick runs, confirm in a dialog, `kdcore.runs.delete_runs`.

The dialog lists what goes and, for a teacher, what relies on it (distilled runs, sweeps) and asks
once more before it goes. Queued and running runs cannot be deleted: stop them first. The choice
and the request waiting for confirmation live in session state, so the dialog survives the page's
reruns; the deletion itself runs in a button callback, before the page redraws.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import streamlit as st

from kdcore.deletion import delete_runs, dependants
from kdcore.runs import RunError, RunRecord, load_run
from kdcore.scheduler import RunQueue
from ui.context import set_widget_value
from ui.runs_view import TOAST_KEY, run_title, show_pending_toast
from ui.text import plain


def counted(count: int, noun: str) -> str:
    """A count and its noun: 1 run, 2 runs."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def runs(count: int) -> str:
    return counted(count, "run")


def delete_runs_ui(queue: RunQueue, records: Sequence[RunRecord], key: str) -> None:
    """A picker of runs to delete (from `records`) and a Delete button that asks first."""
    show_pending_toast()
    error = st.session_state.pop(f"{key}.error", None)
    if error:
        st.error(f"Nothing was deleted: {plain(error)}")
    by_id = {record.run_id: record for record in records}
    chosen_key = f"{key}.ids"
    set_widget_value(chosen_key, [i for i in st.session_state.get(chosen_key, []) if i in by_id])
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    chosen = left.multiselect(
        "Runs to delete",
        list(by_id),
        key=chosen_key,
        format_func=lambda run_id: f"{run_title(by_id[run_id])} ({run_id})",
        placeholder="Pick one or more runs",
    )
    if right.button(
        "Delete…", key=f"{key}.delete_btn", disabled=not chosen, icon=":material/delete:"
    ):
        active = [by_id[run_id] for run_id in chosen if by_id[run_id].active]
        if active:
            names = ", ".join(plain(run_title(record)) for record in active)
            st.warning(
                f"Queued and running runs cannot be deleted: stop {names} first (its page has "
                "a Stop button), then delete it."
            )
        else:
            st.session_state[f"{key}.pending"] = list(chosen)
    pending = st.session_state.get(f"{key}.pending")
    if pending:
        title = f"Delete {runs(len(pending))}?"
        dialog = st.dialog(title, width="medium", on_dismiss=partial(_forget, key))
        dialog(_confirm)(queue.root, key, pending)


def _confirm(root: Path, key: str, run_ids: list[str]) -> None:
    """The dialog's body: what goes, what relies on it, Delete and Cancel."""
    if st.session_state.get(f"{key}.pending") != run_ids:  # deleted or cancelled meanwhile
        st.rerun()
    records = []
    for run_id in run_ids:
        try:
            records.append(load_run(run_id, root))
        except RunError:
            continue  # gone meanwhile
    st.markdown(
        "Their folders are removed for good: weights, epoch rows, logs and the teacher's stored "
        "outputs."
    )
    st.markdown("\n".join(f"- {plain(run_title(r))} ({plain(r.run_id)})" for r in records))
    asks = [_dependants_warning(record, root, run_ids) for record in records]
    asks = [text for text in asks if text]
    for text in asks:
        st.warning(text)
    sure = not asks or st.checkbox(
        "Delete it anyway: the runs it taught keep their results, but cannot be resumed, rerun "
        "or evaluated against it again.",
        key=f"{key}.anyway",
    )
    left, right = st.columns(2)
    left.button(
        f"Delete {runs(len(records))}",
        key=f"{key}.confirm_btn",
        type="primary",
        disabled=not sure or not records,
        on_click=_delete,
        args=(root, key, [r.run_id for r in records]),
    )
    right.button("Cancel", key=f"{key}.cancel_btn", on_click=_forget, args=(key,))


def _dependants_warning(record: RunRecord, root: Path, deleted: Sequence[str]) -> str | None:
    """For a teacher that others rely on (and that are not deleted with it): who they are."""
    if record.spec.role != "teacher":
        return None
    found = dependants(record.run_id, root)
    taught = [run_id for run_id in found.runs if run_id not in deleted]
    if not taught and not found.sweeps:
        return None
    parts = [
        f"{counted(len(ids), noun)} ({', '.join(ids)})"
        for ids, noun in ((taught, "distilled run"), (found.sweeps, "sweep"))
        if ids
    ]
    return plain(f"{run_title(record)} is the teacher of " + " and ".join(parts) + ".")


def _delete(root: Path, key: str, run_ids: list[str]) -> None:
    """Button callback: delete, then clear the request and the choice (before widgets draw)."""
    _forget(key)
    try:
        deleted = delete_runs(run_ids, root)
    except RunError as error:
        st.session_state[f"{key}.error"] = str(error)
        return
    st.session_state[f"{key}.ids"] = []
    st.session_state[TOAST_KEY] = f"Deleted {runs(len(deleted))}."


def _forget(key: str) -> None:
    st.session_state.pop(f"{key}.pending", None)
    st.session_state.pop(f"{key}.anyway", None)
