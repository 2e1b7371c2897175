"""Classify images: upload pictures, see what the teacher and the student say about each."""

from __future__ import annotations

import ui.startup  # first: see its docstring

# isort: split
import streamlit as st

from kdcore.checkpoints import CheckpointError
from kdcore.inference import ACCEPTED_EXTENSIONS, ClassifiedUpload, classify_upload
from kdcore.plot_outputs import topk_bars
from kdcore.plots import STUDENT_COLOR, TEACHER_COLOR
from ui.context import cached_model, get_queue, init_state
from ui.predictions import enlarge
from ui.runs_view import run_picker, with_weights
from ui.text import plain

ui.startup.through_app()

COLORS = {"teacher": TEACHER_COLOR, "student": STUDENT_COLOR}

init_state({"classify.k": 3})


def models_ui() -> dict:
    """Pick the teacher and student runs; returns {name: (model, classes)} of those that load."""
    records = get_queue().runs()
    left, right = st.columns(2)
    with left:
        teacher_id = run_picker(
            "Teacher",
            with_weights(records, ["teacher"]),
            key="classify.teacher",
            none_label="no teacher",
        )
    with right:
        student_id = run_picker(
            "Student",
            with_weights(records, ["distill", "student"]),
            key="classify.student",
            none_label="no student",
        )
    models = {}
    for name, run_id in (("teacher", teacher_id), ("student", student_id)):
        if run_id is None:
            continue
        try:
            model, payload = cached_model(get_queue().run(run_id).checkpoint("best"))
        except CheckpointError as error:
            st.error(f"The {name}'s weights cannot be used: {plain(error)}")
            continue
        models[name] = (model, payload["classes"])
    return models


def show_result(result: ClassifiedUpload, index: int) -> None:
    with st.container(border=True):
        if result.error:
            st.error(plain(result.error))
            return
        columns = st.columns([1, 1, 2, 2])
        columns[0].image(result.image, caption=plain(result.name), width="stretch")
        columns[1].image(enlarge(result.view), caption="32×32 model view", width="stretch")
        for column, (name, rows) in zip(columns[2:], result.top.items(), strict=False):
            column.plotly_chart(
                topk_bars(rows, name, COLORS[name]),
                width="stretch",
                key=f"classify.top_{name}_{index}_chart",
            )


st.title("Classify images")
models = models_ui()
if not models:
    st.info(
        "Needs a trained teacher or student: train one first (the home page has a quick start)."
    )
    st.stop()
k = st.slider("Classes to show", 1, 10, key="classify.k", persist_state="session")
uploads = st.file_uploader(
    "Images (png, jpg, jpeg, webp, bmp)",
    type=list(ACCEPTED_EXTENSIONS),
    accept_multiple_files=True,
    key="classify.uploads",
)
if not uploads:
    st.caption("Upload one or more pictures; each is squashed to 32×32, the size the models know.")
for index, upload in enumerate(uploads or []):
    show_result(classify_upload(upload.name, upload.getvalue(), models, k), index)
