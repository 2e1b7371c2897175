"""Classify images: see what the teacher and the student say about test images or uploads."""

from __future__ import annotations

import ui.startup  # first: see its docstring

# isort: split
import streamlit as st
import torch

from kdcore.checkpoints import CheckpointError
from kdcore.data import ImageSet, source_status
from kdcore.examples import (
    classified_examples,
    draw_examples,
    example_indices,
    example_masks,
    example_pool,
    place_in_class,
)
from kdcore.inference import ACCEPTED_EXTENSIONS, ClassifiedImage, classify_upload
from kdcore.plot_outputs import topk_bars
from kdcore.plots import STUDENT_COLOR, TEACHER_COLOR
from ui.context import cached_model, cached_pool_logits, cached_split, get_queue, init_state
from ui.predictions import SOFTENED_PAGE, enlarge, softened_outputs_link
from ui.runs_view import run_picker, run_title, with_weights
from ui.text import plain

ui.startup.through_app()

COLORS = {"teacher": TEACHER_COLOR, "student": STUDENT_COLOR}
SOURCES = ("test images", "upload")

init_state(
    {"classify.k": 3, "classify.source": SOURCES[0], "classify.count": 6, "classify.draw": 0}
)


def models_ui() -> dict:
    """Pick the teacher and student runs; {name: (model, classes, run)} of those that load."""
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
        record = get_queue().run(run_id)
        try:
            model, payload = cached_model(record.checkpoint("best"))
        except CheckpointError as error:
            st.error(f"The {name}'s weights cannot be used: {plain(error)}")
            continue
        models[name] = (model, payload["classes"], record)
    return models


def show_result(result: ClassifiedImage, index: int, link: dict[str, str] | None = None) -> None:
    """One image's card; `link`: the Softened outputs page's settings for it, if it can open."""
    with st.container(border=True):
        if result.error:
            st.error(plain(result.error))
            return
        if result.truth is None:  # an upload: the picture and the view the models get
            columns = st.columns([1, 1, 2, 2])
            columns[0].image(result.image, caption=plain(result.name), width="stretch")
            columns[1].image(enlarge(result.view), caption="32×32 model view", width="stretch")
            charts = columns[2:]
        else:  # a test image is that view already
            columns = st.columns([1, 2, 2])
            caption = f"{plain(result.name)}, labelled {plain(result.truth)}"
            columns[0].image(enlarge(result.view), caption=caption, width="stretch")
            if link:
                columns[0].page_link(
                    SOFTENED_PAGE,
                    label="Softened outputs",
                    icon=":material/thermostat:",
                    query_params=link,
                    help="Both models' outputs on this image at any temperature T.",
                )
            charts = columns[1:]
        for column, (name, rows) in zip(charts, result.top.items(), strict=False):
            column.plotly_chart(
                topk_bars(rows, verdict(name, rows, result.truth), COLORS[name]),
                width="stretch",
                key=f"classify.top_{name}_{index}_chart",
            )


def verdict(name: str, rows: list[tuple[str, float]], truth: str | None) -> str:
    """A chart's title: the model, and whether its first guess is the true class, when known."""
    if truth is None or not rows:
        return name
    return f"{name}: right" if rows[0][0] == truth else f"{name}: wrong"


def test_images_ui(models: dict, k: int) -> None:
    """Test images of the runs' data where the models are right, wrong or disagree."""
    data = (models.get("student") or models["teacher"])[2].spec.data
    status = source_status(data)
    if not status.ready:
        st.warning(f"The run's data is not available here: {plain(status.message)}")
        return
    test = cached_split(data, "test")
    usable = {}
    for name, (_, classes, record) in models.items():
        if tuple(classes) != tuple(test.classes):
            st.warning(
                f"The {name} was trained on other classes than {plain(data)} has; pick a "
                f"{name} trained on that data to see it here."
            )
        else:
            usable[name] = record
    if not usable:
        return
    pool = example_pool(test)
    logits = {name: cached_pool_logits(r.checkpoint("best"), data) for name, r in usable.items()}
    masks = example_masks(pool.labels, logits)
    right = ", ".join(
        f"the {name} is right on {float((values.argmax(1) == pool.labels).float().mean()):.1%}"
        for name, values in logits.items()
    )
    st.caption(f"{len(pool):,} test images of {plain(data)}, the same on every visit: {right}.")
    left, middle, end = st.columns([3, 2, 1], vertical_alignment="bottom")
    which = left.selectbox(
        "Show",
        list(masks),
        key="classify.which",
        persist_state="session",
        format_func=lambda kind: f"{kind} ({int(masks[kind].sum()):,})",
    )
    count = middle.slider("How many", 1, 24, key="classify.count", persist_state="session")
    if end.button("Draw others", key="classify.redraw_btn"):
        st.session_state["classify.draw"] += 1
    shown = draw_examples(masks[which], count, st.session_state["classify.draw"])
    if len(shown) == 0:
        st.info("No test image of this pool matches that choice.")
        return
    links = softened_links(test, example_indices(test)[shown], usable)
    for index, result in enumerate(classified_examples(pool, shown, logits, k)):
        show_result(result, index, links[index] if links else None)


def softened_links(
    test: ImageSet, split_indices: torch.Tensor, usable: dict
) -> list[dict[str, str]] | None:
    """For each image (its index in the test split), the Softened outputs page's settings that
    show it with these two models, at the T a distilled student learnt at; None unless both the
    teacher and the student are usable."""
    if set(usable) != {"teacher", "student"}:
        return None
    teacher, student = run_title(usable["teacher"]), run_title(usable["student"])
    spec = usable["student"].spec
    trained_at = spec.temperature if spec.role == "distill" else None  # what it learnt from
    return [
        softened_outputs_link(
            teacher,
            student,
            test.classes[int(test.labels[i])],
            place_in_class(test.labels, i),
            temperature=trained_at,
        )
        for i in split_indices.tolist()
    ]


def uploads_ui(models: dict, k: int) -> None:
    uploads = st.file_uploader(
        "Images (png, jpg, jpeg, webp, bmp)",
        type=list(ACCEPTED_EXTENSIONS),
        accept_multiple_files=True,
        key="classify.uploads",
    )
    if not uploads:
        st.caption(
            "Upload one or more pictures; each is squashed to 32×32, the size the models know."
        )
    pairs = {name: (model, classes) for name, (model, classes, _) in models.items()}
    for index, upload in enumerate(uploads or []):
        show_result(classify_upload(upload.name, upload.getvalue(), pairs, k), index)


st.title("Classify images")
models = models_ui()
if not models:
    st.info(
        "Needs a trained teacher or student: train one first (the home page has a quick start)."
    )
    st.stop()
k = st.slider("Classes to show", 1, 10, key="classify.k", persist_state="session")
source = st.radio(
    "Images",
    SOURCES,
    key="classify.source",
    persist_state="session",
    bind="query-params",
    horizontal=True,
)
if source == "upload":
    uploads_ui(models, k)
else:
    test_images_ui(models, k)
