"""Train a teacher: CifarNet, or a ResNet from scratch, ImageNet weights or a weights file."""

from __future__ import annotations

import ui.startup  # first: see its docstring

# isort: split
import streamlit as st

from kdcore.engine import OPTIMIZERS
from kdcore.models import (
    STEMS,
    TEACHER_ARCHS,
    TEACHER_INITS,
    is_resnet,
    suggested_teacher_arch,
)
from kdcore.runs import RunSpec
from ui.context import data_source, get_queue, init_state
from ui.runs_view import (
    EPOCHS_HELP,
    RUN_NAME_HELP,
    SUBSET_HELP,
    live_run_panel,
    name_input,
    run_picker,
    show_newest_active,
    submit_ui,
)
from ui.text import plain

ui.startup.through_app()

INIT_LABELS = {"scratch": "from scratch", "imagenet": "ImageNet weights", "file": "a weights file"}
OPTIMIZER_LABELS = {None: "the recipe's", "muon": "muon (conv filters) + sgd"}
STEM_LABELS = {
    "cifar": "cifar: 3x3 stride 1, no max-pool (suits 32 px)",
    "imagenet": "imagenet: torchvision's 7x7 stride 2 + max-pool",
}

init_state(
    {
        "teacher.arch": suggested_teacher_arch(),
        "teacher.stem": "cifar",
        "teacher.init": "scratch",
        "teacher.weights_file": "",
        "teacher.epochs": 10,
        "teacher.subset": 0,
        "teacher.batch_size": 128,
        "teacher.optimizer": None,  # None: the recipe's for the arch, stem and init
        "teacher.lr": None,  # None: the recipe's for the arch, stem and init
        "teacher.seed": 0,
        "teacher.label": "",
    }
)


def teacher_settings_ui() -> RunSpec | None:
    """The settings form; returns a spec when Start is pressed, else None."""
    with st.form("teacher.form"):
        name = name_input("teacher.label", RUN_NAME_HELP, placeholder="e.g. resnet18 baseline")
        left, middle, right = st.columns(3)
        arch = left.selectbox(
            "Architecture",
            list(TEACHER_ARCHS),
            key="teacher.arch",
            persist_state="session",
            help="cifarnet: a compact CIFAR network that trains in minutes on a CPU. "
            "resnet101: the study's teacher; with the cifar stem it wants a GPU.",
        )
        stem = left.radio(
            "ResNet stem",
            STEMS,
            key="teacher.stem",
            persist_state="session",
            format_func=STEM_LABELS.get,
            help="ResNets only. The ImageNet stem leaves 8x8 maps of a 32 px image after two "
            "layers; the cifar stem keeps 32x32 (about 15x the compute).",
        )
        init = middle.radio(
            "Initialisation",
            TEACHER_INITS,
            key="teacher.init",
            persist_state="session",
            format_func=INIT_LABELS.get,
            horizontal=True,
        )
        weights = right.text_input(
            "Weights file (.pth)",
            key="teacher.weights_file",
            persist_state="session",
            help="For 'a weights file', or ImageNet weights offline: a "
            "torchvision state_dict of this architecture.",
        )
        epochs = left.number_input(
            "Epochs",
            min_value=0,
            step=1,
            key="teacher.epochs",
            persist_state="session",
            help=EPOCHS_HELP,
        )
        subset = middle.number_input(
            "Training images (0 = all)",
            min_value=0,
            step=500,
            key="teacher.subset",
            persist_state="session",
            help=SUBSET_HELP,
        )
        batch_size = right.number_input(
            "Batch size", min_value=1, step=32, key="teacher.batch_size", persist_state="session"
        )
        optimizer = left.selectbox(
            "Optimiser",
            [None, *OPTIMIZERS],
            key="teacher.optimizer",
            persist_state="session",
            format_func=lambda name: OPTIMIZER_LABELS.get(name, name),
            placeholder=OPTIMIZER_LABELS[None],  # what a selectbox at None shows
            help="The recipe's: Muon for CifarNet's conv filters and SGD for the rest; SGD for "
            "the ResNets. muon: the conv filters by Muon, every other parameter by SGD.",
        )
        lr = middle.number_input(
            "Peak learning rate (one-cycle)",
            min_value=0.0,
            step=0.01,
            format="%.4f",
            key="teacher.lr",
            persist_state="session",
            placeholder="the recipe's",
            help="Empty: the recipe for the architecture, stem and initialisation "
            "(README, 'Teacher recipes'). With Muon, the lr of the parameters SGD steps; the "
            "filters keep the recipe's Muon lr.",
        )
        seed = right.number_input(
            "Seed", min_value=0, step=1, key="teacher.seed", persist_state="session"
        )
        started = st.form_submit_button("Start training", type="primary")
    if not started:
        return None
    return RunSpec(
        role="teacher",
        data=data_source(),
        arch=arch,
        stem=stem if is_resnet(arch) else None,
        init=init,
        weights_file=weights.strip() or None,
        epochs=int(epochs),
        train_subset=int(subset) or None,
        batch_size=int(batch_size),
        optimizer=optimizer,
        lr=None if lr is None else float(lr),
        seed=int(seed),
        label=name.strip(),
    )


st.title("Train a teacher")
st.caption(
    f"Data: {plain(data_source())} (change it in the sidebar). The run trains in the background: "
    "leave this page, reload or open a second tab, it goes on."
)
queue = get_queue()
spec = teacher_settings_ui()
if spec is not None:
    run_id = submit_ui(queue, lambda: spec)
    if run_id:
        st.session_state["teacher.run_id"] = run_id
        st.success(f"Queued {plain(run_id)}.")

teachers = [r for r in queue.runs() if r.spec.role == "teacher"]
show_newest_active("teacher.run_id", teachers)
st.subheader("Run")
run_id = run_picker("Run shown below", teachers, key="teacher.run_id", in_url=True)
if run_id is None:
    st.info("No teacher runs yet: set the options above and press Start.")
else:
    live_run_panel(queue, run_id, key="teacher.live")
