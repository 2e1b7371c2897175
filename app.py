"""The dashboard: `streamlit run app.py`. This file is the router, the sidebar and the home page.

Pages live in pages/; each is thin (widgets -> kdcore -> rendering). Every run trains in
a process of its own (`python -m kdcore execute`, started by ui.context.get_queue), so leaving a
page, reloading or restarting the server keeps it going.
"""

from __future__ import annotations

import ui.startup  # first: see its docstring

# isort: split
from pathlib import Path

import streamlit as st

from kdcore.data import CIFAR10, SYNTHETIC, source_status
from kdcore.runs import RunSpec
from ui.context import (
    DATA_SOURCE_KEY,
    TABLE_POLL_SECONDS,
    checkpoints_root,
    data_source,
    default_data_source,
    device_summary,
    get_queue,
    init_state,
    remember_data_source,
)
from ui.deletion import delete_runs_ui
from ui.runs_view import RunFilter, run_filter_ui, show_runs_table, submit_ui
from ui.text import plain

ICON = Path(__file__).parent / "ui" / "favicon.png"  # served by this server: no font CDN
FOLDER_CHOICE = "a folder or archive"
DATA_CHOICES = (SYNTHETIC, CIFAR10, FOLDER_CHOICE)

QUICK_STUDENT = RunSpec(role="student", data=SYNTHETIC, epochs=8, label="quick start")
QUICK_TEACHER = RunSpec(
    role="teacher",
    data=SYNTHETIC,
    arch="cifarnet",
    epochs=2,
    train_subset=1000,
    batch_size=64,
    label="quick teacher",
)


def data_source_ui() -> str:
    """Sidebar: which data new runs use; stored in session state for every page."""
    default = default_data_source()
    init_state(
        {
            "app.data_choice": default if default in DATA_CHOICES[:2] else FOLDER_CHOICE,
            "app.data_folder": "" if default in DATA_CHOICES[:2] else default,
        }
    )
    choice = st.sidebar.selectbox(
        "Data for new runs",
        DATA_CHOICES,
        key="app.data_choice",
        bind="query-params",  # a link reproduces the view: ?app.data_choice=...
        help="synthetic: a generated 10-class set that works offline. "
        "cifar10: data/cifar10 (downloaded once when online). "
        "A folder: train/<class>/ and test/<class>/ images, or a "
        ".tar.gz of one.",
    )
    source = choice
    if choice == FOLDER_CHOICE:
        source = st.sidebar.text_input(
            "Folder or archive path", key="app.data_folder", bind="query-params"
        ).strip()
    st.session_state[DATA_SOURCE_KEY] = source
    status = source_status(source) if source else None
    if status is None:
        st.sidebar.warning("Type a folder path.")
    elif status.ready:
        remember_data_source(source)
        st.sidebar.caption(f":material/check_circle: {plain(status.message)}")
    else:
        st.sidebar.warning(plain(status.message))
    return source


def home() -> None:
    st.title("Knowledge distillation on CIFAR-10")
    st.markdown(
        "Train a large **teacher** network, then a small **student** that learns from the "
        "teacher's softened outputs as well as from the labels. Compare runs against the "
        "study's numbers, and look at what the two models say about any image."
    )
    queue = get_queue()
    source = data_source()
    status = source_status(source) if source else None
    left, right = st.columns(2)
    left.markdown(f"**Device:** {device_summary()}")
    left.markdown(f"**Runs folder:** {plain(checkpoints_root())}")
    ready = "ready" if status and status.ready else "not ready"
    right.markdown(f"**Data:** {plain(source or '?')} — {ready}")
    right.caption(
        (plain(status.message) if status else "No folder given.")
        + " Switch it in the sidebar (synthetic works offline)."
    )
    quick_start_ui(queue)
    st.subheader("Runs")
    records = queue.runs()
    run_filter = run_filter_ui(records, key="home.filter")
    polling = any(record.active for record in records)
    st.fragment(run_every=TABLE_POLL_SECONDS if polling else None)(_runs_list)(
        queue, polling, run_filter
    )
    delete_runs_ui(queue, run_filter(records), key="home.delete")


def quick_start_ui(queue) -> None:
    """Two buttons that start something that works offline, within a minute on a laptop CPU."""
    st.subheader("Quick start (offline)")
    left, right = st.columns(2)
    if left.button(
        "Train a small student on synthetic data (8 epochs, about 30 s)",
        key="home.quick_student_btn",
        type="primary",
        icon=":material/rocket_launch:",
    ):
        run_id = submit_ui(queue, lambda: QUICK_STUDENT)
        if run_id:
            st.session_state["distill.run_id"] = run_id
            st.switch_page("pages/distill_student.py")
    if right.button(
        "Train a small CifarNet teacher on synthetic data",
        key="home.quick_teacher_btn",
        icon=":material/school:",
    ):
        run_id = submit_ui(queue, lambda: QUICK_TEACHER)
        if run_id:
            st.session_state["teacher.run_id"] = run_id
            st.switch_page("pages/train_teacher.py")


def _runs_list(queue, polling: bool, run_filter: RunFilter) -> None:
    records = queue.runs()
    if polling and not any(record.active for record in records):
        st.rerun()  # the last active run ended: redraw once, without polling
    show_runs_table(run_filter(records), key="home.runs_table", total=len(records))


st.set_page_config(page_title="kdcore · distillation", page_icon=ICON, layout="wide")
data_source_ui()
navigation = st.navigation(
    [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        st.Page("pages/train_teacher.py", title="Train a teacher", icon=":material/school:"),
        st.Page("pages/distill_student.py", title="Distil a student", icon=":material/science:"),
        st.Page("pages/sweeps.py", title="Sweep T and alpha", icon=":material/grid_on:"),
        st.Page("pages/compare_runs.py", title="Compare runs", icon=":material/monitoring:"),
        st.Page(
            "pages/softened_outputs.py", title="Softened outputs", icon=":material/thermostat:"
        ),
        st.Page(
            "pages/classify_images.py", title="Classify images", icon=":material/image_search:"
        ),
    ]
)
ui.startup.entered_through_app()
navigation.run()
