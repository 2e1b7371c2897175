"""Runs on screen: names, tables, pickers and the live panel that polls a training run.

Runs train in their own processes; everything here reads run folders. The live panel is an
`st.fragment` that re-runs every POLL_SECONDS while its run is queued or running, reads the run's
status, epoch rows and the new batch losses, and redraws; when the run ends it asks for one full
rerun.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kdcore.execute import RESUMABLE, resume_run
from kdcore.plots import learning_curves, live_run_figure, run_colors
from kdcore.progress import format_seconds
from kdcore.runs import (
    ROLES,
    RunError,
    RunRecord,
    RunSpec,
    recorded_train_config,
    stop_requested_at,
)
from kdcore.scheduler import RunQueue
from kdcore.status import STATES
from ui.context import POLL_SECONDS, batch_tail
from ui.text import plain

EPOCHS_HELP = (
    "Passes over the training images. More epochs train longer and usually reach a higher "
    "accuracy, until the model stops improving."
)
SUBSET_HELP = (
    "Train on this many images drawn at random (the same ones for a given seed), for a quick "
    "try; 0 trains on all of them. The test set is always whole."
)
ALPHA_LABEL = "alpha (weight of the teacher's soft targets)"
ALPHA_HELP = (
    "How much of the loss comes from matching the teacher's softened outputs; the rest, "
    "1 - alpha, from the true labels. 0 ignores the teacher, 1 ignores the labels."
)
EMPTY_CELL = "–"  # how a table shows a missing number
TOAST_KEY = "runs_view.toast"  # a toast to show after the rerun that follows an action
PHASE_NAMES = {  # what a run's first phases mean, in the words of someone watching it
    "starting": "starting its process",
    "loading data": "loading data (decoded once, then read from the cache)",
}


def name_input(key: str, help: str, placeholder: str | None = None) -> str:
    """The optional name field of a start form (at most 80 characters)."""
    return st.text_input(
        "Name (optional)",
        key=key,
        persist_state="session",
        max_chars=80,
        placeholder=placeholder,
        help=help,
    )


RUN_NAME_HELP = "Your name for this run: it heads the run wherever it is shown."


def run_kind(spec: RunSpec) -> str:
    """What a run trains: "teacher cifarnet (scratch)", "student alone", "distilled T=2 α=0.5"."""
    if spec.role == "teacher":
        stem = f", {spec.model_stem} stem" if spec.model_stem else ""
        return f"teacher {spec.model_arch} ({spec.init}{stem})"
    if spec.role == "student":
        return "student alone"
    mirrored = ", teacher + mirror" if spec.teacher_tta == "flip" else ""
    return f"distilled T={spec.temperature:g} α={spec.alpha:g}{mirrored}"


def run_title(record: RunRecord) -> str:
    """A short human name: what the run is, its best accuracy and the end of its id."""
    spec = record.spec
    what = run_kind(spec)
    # Only facts that no longer change: a picker's labels are not redrawn while a run trains.
    settled = not record.active
    best = f" · {record.best_test_acc:.1%}" if settled and record.best_test_acc is not None else ""
    status = f" · {record.status}" if record.status in ("stopped", "failed", "interrupted") else ""
    label = f"{spec.label} · " if spec.label else ""
    return f"{label}{what}{status}{best} · {record.run_id[-4:]}"


def chart_colors(queue: RunQueue) -> dict[str, str]:
    """Run id -> its colour on every chart (kdcore.plots.run_colors), whatever is selected."""
    root = queue.root
    folders = root.iterdir() if root.is_dir() else ()
    return run_colors([folder.name for folder in folders if (folder / "config.json").is_file()])


def legend_below(figure: go.Figure) -> go.Figure:
    """Put a chart's legend under it, so long run names do not squeeze the plot."""
    figure.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0})
    return figure


def format_time(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else ""


def percent(value: float | None) -> float | None:
    """A fraction as a percentage rounded for tables; None stays None."""
    return round(100 * value, 2) if value is not None else None


def bold_best(rows: Sequence[dict[str, Any]], column: str):
    """Rows as a pandas Styler for `st.dataframe`: the row(s) highest in `column` in bold, each
    number as rounded (a Styler would pad it to six decimals), an empty cell as a dash."""
    frame = pd.DataFrame(rows)
    styler = frame.style.format(
        lambda v: f"{v:.6g}" if isinstance(v, float) else v, na_rep=EMPTY_CELL
    )
    if frame.empty or frame[column].isna().all():
        return styler
    best = frame[column].max()
    return styler.apply(
        lambda row: ["font-weight: bold" if row[column] == best else ""] * len(row), axis=1
    )


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV; the columns are every key any row has, in the order they first appear."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list({key: None for r in rows for key in r}))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def runs_table(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Rows for st.dataframe: one per run, newest first; what a run is and how it did come
    first, so they show without scrolling sideways."""
    return [
        {
            "run": record.run_id,
            "label": record.spec.label,
            "what": run_kind(record.spec),
            "best test acc (%)": percent(record.best_test_acc),
            "status": record.status,
            "progress": record.progress,
            "epochs": record.spec.epochs,
            "started at": format_time(record.run_status.started_at or record.created_at),
            "role": record.spec.role,
        }
        for record in records
    ]


RUN_TABLE_COLUMNS = {
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
    "best test acc (%)": st.column_config.NumberColumn(format="%.2f"),
}


def show_runs_table(records: Sequence[RunRecord], key: str, total: int | None = None) -> None:
    """The runs table; `total`: how many runs there are before a filter left `records`. A row
    ticked in it (its left-hand box) gets a link to the page that shows that run; several, a
    link that compares them."""
    if not records:
        st.info("No run matches the filters." if total else "No runs yet.")
        return
    if total is not None and total != len(records):
        st.caption(f"{len(records)} of {total} runs match the filters.")
    event = show_table(
        runs_table(records),
        hide_index=True,
        column_config=RUN_TABLE_COLUMNS,
        key=key,
        on_select="rerun",
        selection_mode="multi-row",
    )
    picked = [records[row] for row in event.selection.rows if row < len(records)]
    if not picked:
        st.caption("Tick a run's box to open it on its page; tick several to compare them.")
        return
    if len(picked) == 1:
        page, query_params = run_page_link(picked[0])
        label, icon = f"Open {run_title(picked[0])}", ":material/open_in_new:"
    else:
        page, query_params = compare_link(picked)
        label, icon = f"Compare these {len(picked)} runs", ":material/monitoring:"
    st.page_link(page, label=label, icon=icon, query_params=query_params)


# role -> the page that shows such a run, and the key of its run picker (kept in the page's URL)
RUN_PAGES = {
    "teacher": ("pages/train_teacher.py", "teacher.run_id"),
    "student": ("pages/distill_student.py", "distill.run_id"),
    "distill": ("pages/distill_student.py", "distill.run_id"),
}


COMPARE_PAGE = "pages/compare_runs.py"


def compare_link(records: Sequence[RunRecord]) -> tuple[str, dict[str, list[str]]]:
    """The Compare runs page with these runs chosen (by title, as its picker shows them)."""
    return COMPARE_PAGE, {"compare.ids": [run_title(record) for record in records]}


def run_page_link(record: RunRecord) -> tuple[str, dict[str, str]]:
    """The page that shows this run and the URL settings that pick it there (its title, as the
    page's picker shows it)."""
    page, key = RUN_PAGES[record.spec.role]
    return page, {key: run_title(record)}


def show_table(data: Any, **kwargs: Any) -> Any:
    """`st.dataframe` with empty cells shown as EMPTY_CELL rather than Streamlit's "None"."""
    return st.dataframe(data, **{"placeholder": EMPTY_CELL, **kwargs})


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list shows: any of these roles, states and data sources (none chosen: all),
    and a name (label) or id that contains `text`, whatever the case.

        RunFilter(roles=("teacher",), text="resnet")(records)
    """

    roles: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    text: str = ""

    def keeps(self, record: RunRecord) -> bool:
        text = self.text.strip().casefold()
        named = text in record.spec.label.casefold() or text in record.run_id.casefold()
        return (
            (not self.roles or record.spec.role in self.roles)
            and (not self.states or record.status in self.states)
            and (not self.data or record.spec.data in self.data)
            and (not text or named)
        )

    def __call__(self, records: Sequence[RunRecord]) -> list[RunRecord]:
        return [record for record in records if self.keeps(record)]


ROLE_LABELS = {"teacher": "teacher", "student": "student alone", "distill": "distilled student"}


def run_filter_ui(records: Sequence[RunRecord], key: str) -> RunFilter:
    """Role, status, data and name filters in one row; nothing chosen keeps every run.

    The choices live in the page's URL (`?<key>.roles=teacher`), so a link reproduces the list.
    """
    role, state, data, name = st.columns([1, 1, 1.3, 1.3])
    sources = sorted({r.spec.data for r in records} | set(st.session_state.get(f"{key}.data", ())))
    url = {"bind": "query-params", "placeholder": "any"}
    return RunFilter(
        roles=tuple(
            role.multiselect("Role", ROLES, key=f"{key}.roles", format_func=ROLE_LABELS.get, **url)
        ),
        states=tuple(state.multiselect("Status", STATES, key=f"{key}.states", **url)),
        data=tuple(data.multiselect("Data", sources, key=f"{key}.data", **url)),
        text=name.text_input("Name or id contains", key=f"{key}.text", **url),
    )


def run_picker(
    label: str,
    records: Sequence[RunRecord],
    key: str,
    none_label: str | None = None,
    help: str | None = None,
    in_url: bool = False,
) -> str | None:
    """A selectbox of run ids shown by title; with `none_label`, a last "no run" choice (None).

    It starts on `default_run`: never on an interrupted or failed run while there is another.
    `in_url`: the choice is kept in the page's URL (`?<key>=<title>`), so a link reproduces it.
    """
    titles = {record.run_id: run_title(record) for record in records}
    options = list(titles) + ([NO_RUN] if none_label else [])
    if not options:
        return None
    from_url = in_url and key in st.query_params  # the link's choice (Streamlit checks it)
    if st.session_state.get(key) not in options and not from_url:
        st.session_state[key] = default_run(records, allow_none=none_label is not None) or NO_RUN
    choice = st.selectbox(
        label,
        options,
        key=key,
        persist_state="session",
        bind="query-params" if in_url else None,
        help=help,
        format_func=lambda run_id: titles.get(run_id, none_label or ""),
    )
    return choice or None


NO_RUN = ""  # a picker's "no run" choice (a selectbox whose value is None shows no choice)


def default_run(records: Sequence[RunRecord], allow_none: bool = False) -> str | None:
    """A picker's first choice (records are newest first). Picking a model to use (`allow_none`):
    the newest finished run, else None ("no run"). Picking a run to watch: the newest that did
    not fail or break off, else the newest."""
    if allow_none:
        return next((r.run_id for r in records if r.status == "finished"), None)
    sound = [r.run_id for r in records if r.status not in ("failed", "interrupted")]
    return (sound or [r.run_id for r in records] or [None])[0]


def show_newest_active(key: str, records: Sequence[RunRecord]) -> None:
    """On a first visit, a page's run picker shows the newest queued or running run, unless a
    link chose one."""
    if key not in st.session_state and key not in st.query_params:
        active = [r for r in records if r.active]  # records are newest first
        if active:
            st.session_state[key] = active[0].run_id


def with_weights(records: Sequence[RunRecord], roles: Sequence[str]) -> list[RunRecord]:
    """Runs of these roles with best weights to load (finished or stopped), in `roles` order."""
    usable = [
        r
        for r in records
        if r.readable and r.spec.role in roles and not r.active and r.checkpoint("best").is_file()
    ]
    return sorted(usable, key=lambda r: roles.index(r.spec.role))  # stable: newest first per role


def submit_ui(queue: RunQueue, make_spec: Callable[[], Any]) -> str | None:
    """Build the spec and queue it; a RunError (impossible settings) is shown, nothing starts."""
    try:
        return queue.submit(make_spec())
    except (RunError, ValueError) as error:
        st.error(f"Not started: {plain(error)}")
        return None


def live_run_panel(
    queue: RunQueue,
    run_id: str,
    key: str,
    overlay: Callable[[], dict[str, Sequence[dict[str, Any]]]] | None = None,
) -> None:
    """Progress, speed, ETA, live curves and a Stop button for one run; polls while it is active.

    Whoever started the run (this dashboard, another one, the CLI), the panel reads its folder.
    `overlay` returns other runs' epoch rows to draw the live test accuracy over.
    """
    show_pending_toast()
    try:
        record = queue.run(run_id)
    except RunError as error:
        st.warning(plain(error))
        return
    if record.active:
        st.fragment(run_every=POLL_SECONDS)(_poll_live_run)(
            queue, run_id, key, overlay, record.status
        )
    else:
        _draw_run(queue, record, key, overlay)


def _poll_live_run(queue: RunQueue, run_id: str, key: str, overlay, drawn_status: str) -> None:
    record = queue.run(run_id)
    if record.status != drawn_status:
        # queued -> running, or the run ended: redraw the whole page once (queue, titles), which
        # polls again only while the run is still active
        st.rerun()
    _draw_run(queue, record, key, overlay)


def _draw_run(queue: RunQueue, record: RunRecord, key: str, overlay) -> None:
    status, metrics = record.run_status, list(record.metrics)
    st.markdown(f"**{plain(run_title(record))}** &nbsp; {plain(record.run_id)}")
    _status_line(record, queue)
    columns = st.columns(4)
    last = metrics[-1] if metrics else {}
    speed = status.images_per_s if record.active else last.get("images_per_s")
    eta = status.eta_remaining() if record.status == "running" else None  # counts down
    columns[0].metric("epochs done", f"{len(metrics)} / {record.spec.epochs}")
    columns[1].metric("images / s", f"{speed:,.0f}" if speed else "–")
    columns[2].metric("ETA", format_seconds(eta) if eta is not None else "–")
    columns[3].metric(
        "best test acc", f"{max(r['test_acc'] for r in metrics):.1%}" if metrics else "–"
    )
    if "test_acc_tta" in last:
        st.caption(tta_text(last, _tta_mode(record)))
    _stop_or_resume(queue, record, key)
    steps = status.total_steps // status.epochs if status.epochs else None
    batch_losses = batch_tail(str(record.folder)).read()
    log_loss = st.toggle("Log-scale loss", key=f"{key}.log_loss", persist_state="session")
    figure = live_run_figure(metrics, batch_losses, steps, record.spec.epochs, log_loss=log_loss)
    st.plotly_chart(figure, key=f"{key}.live_chart", width="stretch")
    if overlay is not None:
        this_run = f"this run ({record.run_id[-4:]})"
        series = {this_run: metrics, **overlay()}
        if len(series) > 1:
            colors = chart_colors(queue)
            by_title = {**_colors_by_title(series, colors), this_run: colors.get(record.run_id)}
            title = "test accuracy: this run and others"
            figure = learning_curves(series, "test_acc", title=title, colors=by_title)
            st.plotly_chart(legend_below(figure), key=f"{key}.overlay_chart", width="stretch")


TTA_VIEWS = {"flip": "each image and its mirror", "flip+translate": "each image, its mirror "
             "and their one-pixel shifts"}  # fmt: skip


def tta_text(last: dict[str, Any], mode: str | None) -> str:
    """What the last epoch read with the recipe's test-time augmentation (TTA) `mode`: test (and
    validation) accuracy with the logits averaged over several views of each image."""
    views = TTA_VIEWS.get(mode or "", "several views of each image")
    val = f", validation {last['val_acc_tta']:.2%}" if "val_acc_tta" in last else ""
    return (
        f"After the last epoch, with test-time augmentation (the logits of {views} averaged): "
        f"test {last['test_acc_tta']:.2%}{val}. The accuracies above are single-view."
    )


def _tta_mode(record: RunRecord) -> str | None:
    try:
        return recorded_train_config(record.folder, record.spec).tta
    except RunError:
        return None


def _colors_by_title(titles: Iterable[str], colors: dict[str, str]) -> dict[str, str]:
    """The colour of the run each run_title names (a title ends with the end of its run id)."""
    ends: dict[str, list[str]] = {}
    for run_id, colour in colors.items():
        ends.setdefault(run_id[-4:], []).append(colour)
    return {title: ends[title[-4:]][0] for title in titles if len(ends.get(title[-4:], ())) == 1}


def _stop_or_resume(queue: RunQueue, record: RunRecord, key: str) -> None:
    """Stop for a queued or running run; Resume for a stopped, interrupted or failed one."""
    if record.active:
        if stop_requested_at(record.folder) is not None:
            st.caption("Stop requested: the run stops at its next batch.")
        elif st.button("Stop this run", key=f"{key}.stop_btn", type="secondary"):
            try:
                queue.stop(record.run_id)
                st.toast("Stopping at the next batch...")
            except RunError as error:
                st.warning(plain(error))
    elif record.readable and record.status in RESUMABLE:
        done = len(record.metrics)
        where = f"after epoch {done}" if done else "from the start"
        if st.button(
            "Resume",
            key=f"{key}.resume_btn",
            icon=":material/play_arrow:",
            help=f"Queue this run again: it goes on {where} of {record.spec.epochs}, from the "
            "weights and optimiser state saved at the end of its last whole epoch.",
        ):
            _resume(queue, record)


def _resume(queue: RunQueue, record: RunRecord) -> None:
    try:
        done = resume_run(record.run_id, queue.root)
    except RunError as error:
        st.warning(plain(error))
        return
    queue.tick()  # starts it now when there is room
    epochs = record.spec.epochs
    kept = "epoch 1 is kept" if done == 1 else f"epochs 1–{done} are kept"
    st.session_state[TOAST_KEY] = (
        f"Resuming at epoch {done + 1} of {epochs}: {kept}."
        if done
        else f"No whole epoch was saved: the run starts over at epoch 1 of {epochs}."
    )
    st.rerun()  # the panel polls again now that the run is queued


def show_pending_toast() -> None:
    """A toast asked for just before a rerun (st.rerun drops the ones of the run it ends)."""
    message = st.session_state.pop(TOAST_KEY, None)
    if message:
        st.toast(plain(message))


def _status_line(record: RunRecord, queue: RunQueue) -> None:
    status = record.run_status
    if record.status == "running" and status.phase.startswith("teacher outputs"):
        done, total = (int(n) for n in status.phase.split()[-1].split("/"))
        st.progress(
            done / max(1, total),
            text=f"computing teacher outputs for epoch {status.epoch or 1}: {done}/{total} "
            "(stored, so later runs from this teacher skip it)",
        )
    elif record.status == "running" and status.total_steps:
        text = f"running · {plain(status.phase)} · step {status.step}/{status.total_steps}"
        st.progress(record.progress, text=text)
    elif record.status == "running":
        st.progress(0.0, text=f"running · {plain(PHASE_NAMES.get(status.phase, status.phase))}")
    elif record.status == "queued":
        st.progress(record.progress, text=_queued_text(record, queue))
    else:
        error = status.error if record.status != "finished" else None
        st.progress(record.progress, text=record.status + (f": {plain(error)}" if error else ""))


def _queued_text(record: RunRecord, queue: RunQueue) -> str:
    """A queued run's phase ("queued to resume after epoch 2") and what it waits for."""
    phase = record.run_status.phase
    what = plain(phase) if phase.startswith("queued") else "queued"
    active = queue.queue()
    running = sum(r.status == "running" for r in active)
    before = sum(r.status == "queued" and r.created_at < record.created_at for r in active)
    if running < queue.max_running and not before:
        return f"{what} · starts in a moment"
    ahead = f"{running} running" + (f" and {before} queued" if before else "")
    return f"{what} · waits for {ahead} (at most {queue.max_running} at once)"


def queue_table(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The queued and running runs, in the order they started or will start."""
    return [
        {"run": r.run_id, "what": run_title(r), "status": r.status, "phase": r.run_status.phase}
        for r in sorted((r for r in records if r.active), key=lambda r: r.created_at)
    ]
