"""Softened outputs: teacher and student softmax(z / T) on one image, their KL, and T's effect."""

from __future__ import annotations

import ui.startup  # first: see its docstring

# isort: split
import numpy as np
import streamlit as st
import torch
from PIL import Image

from kdcore.checkpoints import CheckpointError
from kdcore.data import source_status
from kdcore.examples import example_pool
from kdcore.inference import (
    ACCEPTED_EXTENSIONS,
    ImageDecodeError,
    decode_image,
    entropy,
    image_to_tensor,
    kl_divergence,
    logits,
    loss_terms_sweep,
    softened_probabilities,
    temperature_sweep,
    to_model_view,
)
from kdcore.plot_outputs import loss_terms_curves, softened_bars, temperature_curves
from kdcore.runs import RunRecord, RunSpec
from ui.context import cached_model, cached_pool_logits, cached_split, get_queue, init_state
from ui.predictions import enlarge
from ui.runs_view import ALPHA_HELP, ALPHA_LABEL, run_picker, with_weights
from ui.text import plain

ui.startup.through_app()

SWEEP = np.geomspace(0.25, 20.0, 60).tolist()

init_state(
    {
        "softened.temperature": RunSpec.temperature,
        "softened.source": "test image",
        "softened.index": 0,
        "softened.alpha": RunSpec.alpha,
    }
)


def test_image_ui(data: str) -> Image.Image | None:
    """Pick a test image of the run's data by class and index; shows it."""
    status = source_status(data)
    if not status.ready:
        st.warning(f"The run's data is not available here: {plain(status.message)}")
        return None
    test = cached_split(data, "test")
    left, right = st.columns(2)
    class_index = left.selectbox(
        "Class",
        range(len(test.classes)),
        key="softened.class",
        persist_state="session",
        bind="query-params",
        format_func=lambda i: test.classes[i],
    )
    positions = torch.nonzero(test.labels == class_index).flatten()
    index = right.number_input(
        f"Image (0–{len(positions) - 1})",
        min_value=0,
        max_value=max(0, len(positions) - 1),
        step=1,
        key="softened.index",
        persist_state="session",
        bind="query-params",
    )
    pixels = test.images[positions[min(int(index), len(positions) - 1)]]  # (3, 32, 32) uint8
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


def uploaded_image_ui() -> Image.Image | None:
    upload = st.file_uploader("An image", type=list(ACCEPTED_EXTENSIONS), key="softened.upload")
    if upload is None:
        return None
    try:
        return to_model_view(decode_image(upload.getvalue(), name=upload.name))
    except ImageDecodeError as error:
        st.error(plain(error))
        return None


def load_pair(teacher_id: str, student_id: str):
    """(teacher, student, class names) or None with an error shown."""
    queue = get_queue()
    try:
        teacher, teacher_payload = cached_model(queue.run(teacher_id).checkpoint("best"))
        student, student_payload = cached_model(queue.run(student_id).checkpoint("best"))
    except CheckpointError as error:
        st.error(f"Cannot load the weights: {plain(error)}")
        return None
    if teacher_payload["classes"] != student_payload["classes"]:
        st.error(
            "The teacher and the student were trained on different classes; pick a pair "
            "trained on the same data."
        )
        return None
    return teacher, student, student_payload["classes"]


def training_temperature_text(spec: RunSpec, teacher_id: str) -> str:
    """What T the student learnt at, as the dotted line on the temperature curves marks it."""
    if spec.role != "distill":
        return "This student was trained alone, on the labels: no temperature shaped it."
    which = "this teacher" if spec.teacher == teacher_id else "another teacher than this one"
    return (
        f"This student was distilled from {which} at T = {spec.temperature:g} "
        f"(alpha = {spec.alpha:g}): the dotted line on the curves above."
    )


def pool_loss_ui(
    teacher: RunRecord,
    student: RunRecord,
    classes: list[str],
    temperature: float,
    alpha: float,
    trained_at: float | None,
) -> None:
    """The loss distillation would give the student on the test pool, at this T and alpha."""
    data = student.spec.data
    status = source_status(data)
    if not status.ready:
        st.info(f"The student's data is not available here: {plain(status.message)}")
        return
    test = cached_split(data, "test")
    if tuple(classes) != tuple(test.classes):
        st.warning(f"These models were trained on other classes than {plain(data)} has.")
        return
    pool = example_pool(test)
    teacher_logits = cached_pool_logits(teacher.checkpoint("best"), data)
    student_logits = cached_pool_logits(student.checkpoint("best"), data)
    now = loss_terms_sweep(student_logits, teacher_logits, pool.labels, [temperature], alpha)
    row = st.columns(4)
    row[0].metric("from the teacher", f"{now['soft'][0]:.3f}")
    row[1].metric("from the labels", f"{now['hard'][0]:.3f}")
    row[2].metric("loss", f"{now['loss'][0]:.3f}")
    row[3].metric("the teacher's share", f"{now['soft_share'][0]:.0%}")
    sweep = loss_terms_sweep(student_logits, teacher_logits, pool.labels, SWEEP, alpha)
    st.plotly_chart(
        loss_terms_curves(sweep, alpha, temperature, training_temperature=trained_at),
        key="softened.loss_chart",
        width="stretch",
    )
    st.caption(
        f"The student's loss on {len(pool):,} test images of {plain(data)} (those Classify "
        f"images draws from), as distillation weighs it: alpha × T²·KL(teacher ‖ student) from "
        f"the teacher plus (1 − alpha) × CE from the labels. These are the trained models, so "
        f"this is the loss where training ended, not where it began."
    )


st.title("Softened outputs")
st.caption(
    "What the student learns from: the teacher's probabilities softened by a temperature "
    "T. Higher T spreads probability over the classes the teacher finds similar."
)
queue = get_queue()
records = queue.runs()
left, right = st.columns(2)
with left:
    teacher_id = run_picker(
        "Teacher",
        with_weights(records, ["teacher", "distill", "student"]),
        key="softened.teacher",
        in_url=True,
    )
with right:
    student_id = run_picker(
        "Student",
        with_weights(records, ["distill", "student"]),
        key="softened.student",
        in_url=True,
    )
if teacher_id is None or student_id is None:
    st.info("Needs two runs with weights: train a teacher and a student first.")
    st.stop()
pair = load_pair(teacher_id, student_id)
if pair is None:
    st.stop()
teacher, student, classes = pair

source = st.radio(
    "Image",
    ("test image", "upload"),
    key="softened.source",
    persist_state="session",
    bind="query-params",
    horizontal=True,
)
image = (
    test_image_ui(queue.run(student_id).spec.data)
    if source == "test image"
    else uploaded_image_ui()
)
if image is None:
    st.stop()
temperature = st.slider(
    "Temperature T",
    0.25,
    20.0,
    step=0.25,
    key="softened.temperature",
    persist_state="session",
    bind="query-params",
)

pixels = image_to_tensor(image)  # (3, 32, 32) uint8
teacher_logits, student_logits = logits(teacher, pixels)[0], logits(student, pixels)[0]
p_teacher = softened_probabilities(teacher_logits, temperature)
p_student = softened_probabilities(student_logits, temperature)
picture, numbers = st.columns([1, 3])
picture.image(enlarge(image), caption="32×32, as the models see it")
kl = float(kl_divergence(p_teacher, p_student))
row = numbers.columns(3)
row[0].metric("KL(teacher ‖ student), nats", f"{kl:.3g}")  # the unit in the label: it fits
row[1].metric("teacher entropy, nats", f"{float(entropy(p_teacher)):.3f}")
row[2].metric("student entropy, nats", f"{float(entropy(p_student)):.3f}")
numbers.caption(
    f"Teacher says {plain(classes[int(p_teacher.argmax())])}, student says "
    f"{plain(classes[int(p_student.argmax())])}."
)
st.plotly_chart(
    softened_bars(classes, p_teacher, p_student, temperature),
    key="softened.bars_chart",
    width="stretch",
)
sweep = temperature_sweep(teacher_logits, student_logits, SWEEP)
student_spec = queue.run(student_id).spec
trained_at = student_spec.temperature if student_spec.role == "distill" else None
st.plotly_chart(
    temperature_curves(sweep, temperature, training_temperature=trained_at),
    key="softened.sweep_chart",
    width="stretch",
)
st.caption(training_temperature_text(student_spec, teacher_id))

st.subheader("The loss at T and alpha")
alpha = st.slider(
    ALPHA_LABEL,
    0.0,
    1.0,
    step=0.05,
    key="softened.alpha",
    persist_state="session",
    bind="query-params",
    help=ALPHA_HELP,
)
pool_loss_ui(queue.run(teacher_id), queue.run(student_id), classes, temperature, alpha, trained_at)
