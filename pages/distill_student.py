"""Distil a student: SmallCNN taught by a finished teacher run (or alone: the baseline)."""

from __future__ import annotations

import ui.startup  # first: see its docstring

# isort: split
import streamlit as st

from kdcore.data import DataError, list_source
from kdcore.runs import (
    RunError,
    RunRecord,
    RunSpec,
    check_teacher,
    teacher_data_warning,
    teacher_views_note,
)
from kdcore.teacher_cache import cached_epoch_files
from ui.context import TABLE_POLL_SECONDS, data_source, get_queue, init_state, set_widget_value
from ui.runs_view import (
    ALPHA_HELP,
    ALPHA_LABEL,
    EPOCHS_HELP,
    RUN_NAME_HELP,
    SUBSET_HELP,
    live_run_panel,
    name_input,
    queue_table,
    run_picker,
    run_title,
    show_newest_active,
    show_table,
    submit_ui,
    with_weights,
)
from ui.text import plain

ui.startup.through_app()

ALONE = "none: the student alone (baseline)"

init_state(
    {
        "distill.temperature": RunSpec.temperature,  # the CLI's defaults: the study's T and alpha
        "distill.alpha": RunSpec.alpha,
        "distill.epochs": RunSpec.epochs,
        "distill.subset": 0,
        "distill.seed": 0,
        "distill.teacher_flip": False,
        "distill.label": "",
        "distill.overlay": None,  # None until the page first picks the baseline
    }
)


def teacher_suits_ui(teacher_id: str) -> bool:
    """Refuse a teacher whose classes differ from the data's (or a student given as one), and
    warn when the same classes came from other images."""
    spec = RunSpec(role="distill", data=data_source(), teacher=teacher_id)
    try:
        check_teacher(spec, list_source(spec.data).classes["train"], queue.root)
    except (RunError, DataError) as error:
        st.error(f"This teacher cannot teach on this data: {plain(error)}")
        return False
    warning = teacher_data_warning(spec, queue.root)
    if warning:
        st.warning(plain(warning))
    return True


def student_settings_ui(teacher_id: str | None, startable: bool = True) -> RunSpec | None:
    """T, alpha, epochs, subset, seed and Start; returns the spec when Start is pressed."""
    with st.form("distill.form"):
        name = name_input(
            "distill.label", RUN_NAME_HELP, placeholder="e.g. T=2 from the cifarnet teacher"
        )
        left, right = st.columns(2)
        temperature = left.slider(
            "Temperature T",
            0.5,
            20.0,
            step=0.5,
            key="distill.temperature",
            persist_state="session",
            help="Softens both models' outputs, softmax(z / T): a higher T spreads the "
            "teacher's probability over more classes, so the student also learns which wrong "
            "classes look alike.",
            disabled=teacher_id is None,
        )
        alpha = right.slider(
            ALPHA_LABEL,
            0.0,
            1.0,
            step=0.05,
            key="distill.alpha",
            persist_state="session",
            help=ALPHA_HELP,
            disabled=teacher_id is None,
        )
        epochs = left.number_input(
            "Epochs",
            min_value=0,
            step=1,
            key="distill.epochs",
            persist_state="session",
            help=EPOCHS_HELP,
        )
        subset = right.number_input(
            "Training images (0 = all)",
            min_value=0,
            step=500,
            key="distill.subset",
            persist_state="session",
            help=SUBSET_HELP,
        )
        seed = left.number_input(
            "Seed", min_value=0, step=1, key="distill.seed", persist_state="session"
        )
        teacher_flip = right.toggle(
            "Teacher averaged with the mirror",
            key="distill.teacher_flip",
            persist_state="session",
            help="The teacher's outputs on each view averaged with those on its mirror image "
            "(its flip test-time augmentation, which adds 0.6-1.2 points on the test split), "
            "at twice its cost when its outputs are first computed.",
            disabled=teacher_id is None,
        )
        label = "Start distillation" if teacher_id else "Start the student alone"
        started = st.form_submit_button(label, type="primary", disabled=not startable)
    if not started:
        return None
    role = "distill" if teacher_id else "student"
    return RunSpec(
        role=role,
        data=data_source(),
        teacher=teacher_id,
        epochs=int(epochs),
        train_subset=int(subset) or None,
        temperature=float(temperature),
        alpha=float(alpha),
        teacher_tta="flip" if teacher_id and teacher_flip else "off",
        seed=int(seed),
        label=name.strip(),
    )


def epochs(count: int) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def teacher_cache_note(teacher: RunRecord, records: list[RunRecord]) -> None:
    """Say whether this teacher's outputs are cached and what the cache saved before."""
    cached = cached_epoch_files(teacher.checkpoint("best"))
    if not cached:
        st.caption(
            "The first distillation from this teacher computes its outputs once and "
            "stores them; later runs with the same data, subset and seed reuse them."
        )
        return
    st.info(
        f"Teacher cache: {epochs(len(cached))} of this teacher's outputs are stored. A run "
        "with the same data, subset and seed reads them instead of running the teacher."
    )
    for record in records:
        summary = record.run_status.teacher_cache
        if record.spec.teacher == teacher.run_id and summary and summary["epochs_from_cache"]:
            st.success(
                f"Run {plain(record.run_id[-4:])} ({plain(run_title(record))}) read "
                f"{epochs(summary['epochs_from_cache'])} from the teacher cache and saved "
                f"{summary['seconds_saved']:.1f} s of teacher compute."
            )
            break


def queue_view(queue) -> None:
    """The queued and running runs; a fragment that polls while there are any, so each row's
    phase follows its run."""
    waiting = queue_table(queue.runs())
    if not waiting:
        return
    st.subheader("Queue")
    st.caption(
        f"At most {queue.max_running} run(s) train at once ($KDCORE_MAX_RUNS); the others "
        "start in this order."
    )
    show_table(waiting, hide_index=True, key="distill.queue_table")


st.title("Distil a student")
queue = get_queue()
records = queue.runs()
teacher_id = run_picker(
    "Teacher",
    with_weights(records, ["teacher"]),
    key="distill.teacher",
    none_label=ALONE,
    help="Teacher runs with weights; it starts on the newest finished one. A stopped, "
    "interrupted or failed teacher can be chosen too: its best epoch's weights teach.",
)
suits = True
if teacher_id:
    suits = teacher_suits_ui(teacher_id)
    teacher = queue.run(teacher_id)
    teacher_cache_note(teacher, records)
    views_note = teacher_views_note(teacher)
    if views_note:
        st.caption(views_note)
spec = student_settings_ui(teacher_id, startable=suits)
if spec is not None:
    run_id = submit_ui(queue, lambda: spec)
    if run_id:
        st.session_state["distill.run_id"] = run_id
        st.success(f"Queued {plain(run_id)}.")
        records = queue.runs()

active = any(record.active for record in records)
st.fragment(run_every=TABLE_POLL_SECONDS if active else None)(queue_view)(queue)

students = [r for r in records if r.spec.role in ("student", "distill")]
show_newest_active("distill.run_id", students)
st.subheader("Run")
run_id = run_picker("Run shown below", students, key="distill.run_id", in_url=True)
if run_id is None:
    st.info("No student runs yet: pick a teacher (or none) and press Start.")
else:
    finished = {r.run_id: r for r in students if r.metrics and r.run_id != run_id}
    baseline = [rid for rid, r in finished.items() if r.spec.role == "student"][:1]
    chosen = st.session_state["distill.overlay"]
    chosen = baseline if chosen is None else [rid for rid in chosen if rid in finished]
    set_widget_value("distill.overlay", chosen)
    overlay_ids = st.multiselect(
        "Draw over the live curve",
        list(finished),
        key="distill.overlay",
        persist_state="session",
        format_func=lambda rid: run_title(finished[rid]),
    )
    overlay = {run_title(finished[rid]): list(finished[rid].metrics) for rid in overlay_ids}
    live_run_panel(queue, run_id, key="distill.live", overlay=lambda: overlay)
    record = queue.run(run_id)
    summary = record.run_status.teacher_cache
    if summary:
        st.caption(
            f"Teacher outputs: {epochs(summary['epochs_from_cache'])} from the cache, "
            f"{summary['epochs_computed']} computed ({summary['seconds_computing']:.1f} s); "
            f"the cache saved {summary['seconds_saved']:.1f} s."
        )
