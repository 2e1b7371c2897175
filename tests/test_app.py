"""The dashboard through Streamlit's AppTest: every page, runs started and polled, bad input,
text from users shown as text.

Runs train on the synthetic set with a few hundred images, so each takes seconds on a CPU.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from kdcore.execute import execute_run
from kdcore.inference import classify_upload
from kdcore.runs import RunSpec, create_run, list_runs, load_run
from kdcore.status import RunStatus, write_status
from ui.context import get_queue
from ui.runs_view import (
    EMPTY_CELL,
    bold_best,
    chart_colors,
    compare_link,
    run_page_link,
    run_title,
)

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
# OneCycle needs several steps per run: keep subset / batch_size >= 8 (engine limitation).
TINY_TEACHER = RunSpec(role="teacher", data="synthetic", arch="cifarnet", epochs=1,
                       train_subset=256, batch_size=32, label="tiny teacher")  # fmt: skip
TINY_STUDENT = RunSpec(role="student", data="synthetic", epochs=1, train_subset=512, batch_size=64)


def png_bytes(size=(48, 40), colour=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with a finished tiny teacher, a student alone and a distilled student."""
    root = tmp_path_factory.mktemp("trained") / "checkpoints"
    teacher = create_run(TINY_TEACHER, root)
    execute_run(teacher, root, device="cpu")
    for spec in (TINY_STUDENT, RunSpec(**{**TINY_STUDENT.to_dict(), "role": "distill",
                                          "teacher": teacher, "temperature": 4.0})):  # fmt: skip
        execute_run(create_run(spec, root), root, device="cpu")
    return root


def use_root(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    monkeypatch.setenv("KDCORE_CHECKPOINTS", str(root))
    monkeypatch.setenv("KDCORE_DATA", "synthetic")
    return root


@pytest.fixture
def empty_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh runs folder; runs still queued or training are stopped afterwards."""
    root = use_root(monkeypatch, tmp_path / "checkpoints")
    yield root
    queue = get_queue()
    for record in queue.queue():
        queue.stop(record.run_id)
    for record in queue.queue():
        queue.wait(record.run_id, timeout=60)


@pytest.fixture
def trained(trained_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_root(monkeypatch, trained_root)


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def progress_texts(at: AppTest) -> list[str]:
    return [element.proto.text for element in at.get("progress")]


def poll_until(at: AppTest, done, timeout: float = 90.0) -> AppTest:
    """Rerun the page (as the live fragment would) until `done(at)` or the timeout."""
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, progress_texts(at)
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return at


HOSTILE = "![t](http://127.0.0.1:9/track.png) <b>x</b> :red[x]"
MARKDOWN_FIELDS = {"body", "label", "text", "caption"}  # what Streamlit renders as markdown


def markdown_on_page(at: AppTest) -> list[str]:
    """Every string the page shows as markdown: text, alerts, metrics, progress, labels, captions.

    Selectbox options, dataframes and charts are left out: Streamlit shows those as plain text.
    """
    found: list[str] = []

    def walk(message) -> None:
        for field, value in message.ListFields():
            values = value if field.is_repeated else [value]
            for item in values:
                if field.message_type is not None:
                    walk(item)
                elif field.name in MARKDOWN_FIELDS and isinstance(item, str):
                    found.append(item)

    for node in [*at.main, *at.sidebar]:
        if getattr(node, "proto", None) is not None and node.type != "plotly_chart":
            walk(node.proto)
    return found


def shown_text(markdown: str) -> str:
    """What markdown made by ui.text.plain shows: escapes resolved, word joiners dropped."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def assert_shown_as_plain_text(at: AppTest) -> str:
    """No markdown on the page has an unescaped image, link, HTML tag or directive; returns
    what the page shows (escapes resolved, word joiners dropped)."""
    texts = markdown_on_page(at)
    for text in texts:
        meaning = re.sub(r"\\.", "", text)  # the characters that still mean something
        assert not re.search(r"!\[|\]\(|<|:[a-z-]+\[|https?://", meaning), text
    return " ".join(shown_text(text) for text in texts)


def table_with_column(at: AppTest, column: str) -> pd.DataFrame:
    """The page's first table with this column (AppTest knows only widgets by their key)."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def test_home_shows_device_data_and_the_runs(trained):
    at = open_page()
    text = " ".join(m.value for m in at.markdown)
    assert "CPU cores" in text and "**Data:** synthetic — ready" in text
    runs = at.dataframe[0].value
    assert sorted(runs["role"]) == ["distill", "student", "teacher"]
    assert set(runs["status"]) == {"finished"}
    # what each run trains, so that runs of one name (a sweep's, a script's) tell apart
    assert sorted(runs["what"]) == ["distilled T=4 α=0.5", "student alone",
                                    "teacher cifarnet (scratch)"]  # fmt: skip
    assert set(runs["epochs"]) == {1}
    # what a run is and how it did first: they show without scrolling the table sideways
    assert list(runs.columns[:4]) == ["run", "label", "what", "best test acc (%)"]


def test_quick_start_trains_a_student_and_shows_it_live(empty_root):
    at = open_page()
    at.button(key="home.quick_student_btn").click().run()
    assert at.title[0].value == "Distil a student"
    poll_until(at, lambda at: any(t.startswith("running") for t in progress_texts(at)))
    assert at.button(key="distill.live.stop_btn").label == "Stop this run"
    queued = at.dataframe[0].value  # the queue, a fragment that polls its runs' phases
    assert queued["status"].tolist() == ["running"] and "quick start" in queued["what"][0]


def test_student_run_polled_to_completion_then_compared(empty_root):
    at = open_page("distill_student")
    at.number_input(key="distill.epochs").set_value(2)
    at.number_input(key="distill.subset").set_value(512)
    at.button[0].click().run()  # the form's Start button
    assert at.success and "Queued" in at.success[0].value
    poll_until(at, lambda at: "finished" in progress_texts(at))
    assert [m.value for m in at.metric][0] == "2 / 2"
    (record,) = get_queue().runs()
    assert record.status == "finished" and len(record.metrics) == 2
    compare = open_page("compare_runs")
    assert compare.dataframe[0].value["epochs"].tolist() == ["2/2"]


def test_teacher_run_can_be_stopped_from_the_page(empty_root):
    at = open_page("train_teacher")
    at.selectbox(key="teacher.arch").set_value("resnet18")
    at.number_input(key="teacher.epochs").set_value(20)
    at.number_input(key="teacher.subset").set_value(2000)
    at.button[0].click().run()
    at.button(key="teacher.live.stop_btn").click().run()
    poll_until(at, lambda at: "stopped" in progress_texts(at))
    (record,) = get_queue().runs()
    assert record.status == "stopped"


@pytest.mark.parametrize(
    ("page", "field", "value", "message"),
    [
        ("train_teacher", "teacher.epochs", 0, "Epochs must be at least 1"),
        ("train_teacher", "teacher.lr", 0.0, "Learning rate must be greater than 0"),
        ("distill_student", "distill.epochs", 0, "Epochs must be at least 1"),
    ],
)
def test_settings_that_make_no_sense_are_refused(empty_root, page, field, value, message):
    at = open_page(page)
    at.number_input(key=field).set_value(value)
    at.button[0].click().run()
    assert at.error and message in at.error[0].value
    assert not any(empty_root.glob("*/config.json"))  # nothing started


def test_a_missing_data_folder_is_refused(empty_root, tmp_path):
    at = open_page()  # the data source lives in the sidebar, set on any page
    at.sidebar.selectbox(key="app.data_choice").set_value("a folder or archive").run()
    at.sidebar.text_input(key="app.data_folder").set_value(str(tmp_path / "nowhere")).run()
    assert "does not exist" in at.sidebar.warning[0].value
    at.switch_page("pages/train_teacher.py").run()
    at.button[0].click().run()
    assert "does not exist" in at.error[0].value


def test_compare_page_table_study_rows_and_downloads(trained):
    at = open_page("compare_runs")
    table = at.dataframe[0].value
    assert len(table) == 3 and table["best test acc (%)"].notna().all()
    distilled = table[table["role"] == "distill"].iloc[0]
    assert distilled["T"] == 4.0 and distilled["alpha"] == 0.5
    assert distilled["agreement (%)"] >= 0 and distilled["ECE"] >= 0  # from its evaluation.json
    charts = {chart.proto.id: chart.proto.spec for chart in at.get("plotly_chart")}
    titles = " ".join(charts.values())
    assert "reliability" in titles and '"text":"teacher"' in titles and '"text":"student"' in titles
    study = table_with_column(at, "study (%)")  # synthetic data: none is the study's protocol
    assert len(study) == 5 and (study["our runs"] == "–").all() and (study["n"] == 0).all()
    commands = [code.value for code in at.code]
    assert len(commands) == 5 and all("the CIFAR-10 classes" in c for c in commands)
    assert len(at.get("download_button")) == 3
    at.slider(key="compare.smoothing").set_value(0.6).run()
    assert not at.exception


def settings_table(at: AppTest) -> pd.DataFrame:
    """Compare's settings table: after the runs side by side, the other table with a "what"."""
    return [df.value for df in at.dataframe if "what" in df.value.columns][1]


def test_compare_lists_the_settings_that_tell_the_chosen_runs_apart(trained):
    at = open_page("compare_runs")
    table = settings_table(at).set_index("what")
    records = {record.spec.role: record for record in list_runs(trained)}
    teacher, distilled = run_title(records["teacher"]), run_title(records["distill"])
    assert table.loc[teacher, "role"] == "teacher" and table.loc[teacher, "arch"] == "cifarnet"
    assert table.loc[teacher, "optimizer"] == "muon" and table.loc[distilled, "lr"] == "0.012"
    assert table.loc[distilled, "temperature"] == "4" and pd.isna(table.loc[teacher, "temperature"])
    assert table.loc[distilled, "teacher"] == teacher  # by its title, as the pickers name it
    assert "seed" not in table.columns and "data" not in table.columns  # the same in every run
    at.toggle(key="compare.every_setting").set_value(True).run()
    every = settings_table(at)
    assert {"seed", "data"} <= set(every.columns) and set(table.columns) < set(every.columns)
    at.multiselect(key="compare.ids").set_value([records["student"].run_id]).run()
    assert "seed" in settings_table(at).columns
    at.toggle(key="compare.every_setting").set_value(False).run()
    assert any("Choose two runs or more" in caption.value for caption in at.main.caption)
    assert not at.exception


def test_a_teacher_run_shows_its_test_time_augmented_accuracy_beside_the_single_view(trained):
    at = open_page("train_teacher")
    last = next(r for r in list_runs(trained) if r.spec.role == "teacher").metrics[-1]
    assert "test_acc_tta" in last  # CifarNet's recipe reads its flip-and-translate TTA
    captions = [caption.value for caption in at.main.caption]
    tta = next(caption for caption in captions if "test-time augmentation" in caption)
    assert f"test {last['test_acc_tta']:.2%}" in tta and "its mirror and their" in tta
    at.switch_page("pages/distill_student.py").run()  # students read no TTA
    assert not any("test-time augmentation" in c.value for c in at.main.caption)


def test_softened_outputs_show_kl_that_moves_with_temperature(trained):
    at = open_page("softened_outputs")
    assert len(at.get("plotly_chart")) == 3 and at.get("image")  # bars, T curves, loss terms
    kl_at_first = at.metric[0].value
    at.slider(key="softened.temperature").set_value(1.0).run()
    assert at.metric[0].value != kl_at_first and at.metric[0].label.endswith("nats")
    assert float(at.metric[0].value) >= 0 and len(at.metric[0].value) <= 8  # fits its column
    at.number_input(key="softened.index").set_value(5).run()
    at.radio(key="softened.source").set_value("upload").run()
    at.get("file_uploader")[0].set_value(("red.png", png_bytes(), "image/png"))
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 3


def test_softened_outputs_weigh_the_loss_terms_by_alpha_on_the_test_pool(trained):
    at = open_page("softened_outputs")
    metrics = {metric.label: metric.value for metric in at.metric}
    soft, hard = float(metrics["from the teacher"]), float(metrics["from the labels"])
    assert soft > 0 and hard > 0 and float(metrics["loss"]) == pytest.approx(soft + hard, abs=2e-3)
    assert metrics["the teacher's share"] == f"{soft / (soft + hard):.0%}"
    defaults = RunSpec(role="distill")  # the page opens at the distil form's T and alpha
    assert at.slider(key="softened.temperature").value == defaults.temperature
    assert at.slider(key="softened.alpha").value == defaults.alpha
    at.slider(key="softened.alpha").set_value(0.0).run()  # the labels only
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["from the teacher"] == "0.000" and metrics["the teacher's share"] == "0%"
    assert float(metrics["from the labels"]) == pytest.approx(2 * hard, abs=2e-3)  # was 0.5 x CE
    at.slider(key="softened.temperature").set_value(1.0).run()
    assert {m.label: m.value for m in at.metric}["from the labels"] == metrics["from the labels"]
    titles = [chart_specs(at)["softened.loss_chart"]["layout"]["title"]["text"]]
    assert "alpha = 0" in titles[0] and not at.exception


def test_classify_uploads_each_file_on_its_own(trained):
    at = open_page("classify_images")
    at.radio(key="classify.source").set_value("upload").run()
    files = [("red.png", png_bytes(), "image/png"), ("empty.png", b"", "image/png"),
             ("notes.jpg", b"not an image at all", "image/jpeg"),
             ("blue.png", png_bytes((20, 20), (0, 0, 255)), "image/png")]  # fmt: skip
    at.get("file_uploader")[0].set_value(files)
    at.run()
    assert not at.exception
    errors = [shown_text(e.value) for e in at.error]
    assert len(errors) == 2 and "empty.png is empty" in errors[0] and "notes.jpg" in errors[1]
    assert len(at.get("plotly_chart")) == 4  # teacher and student top-k for the two good files


def test_classify_shows_test_images_where_the_teacher_and_the_student_part(trained):
    at = open_page("classify_images")  # test images first: nothing to upload
    kinds = at.selectbox(key="classify.which").options
    assert [kind.rsplit(" (", 1)[0] for kind in kinds] == [
        "any image", "the teacher right, the student wrong", "the student right, the teacher wrong",
        "the two disagree", "both wrong"]  # fmt: skip
    assert kinds[0] == "any image (1,000)"  # the synthetic test split is smaller than the pool
    assert len(at.get("plotly_chart")) == 2 * 6  # six images, each with both models' top-k
    captions = " ".join(
        shown_text(i.caption) for image in at.get("image") for i in image.proto.imgs
    )
    assert captions.count("test image") == 6 and "of 1,000, labelled pattern" in captions
    first = [chart.proto.spec for chart in at.get("plotly_chart")]
    at.button(key="classify.redraw_btn").click().run()
    assert [chart.proto.spec for chart in at.get("plotly_chart")] != first  # other images
    both_wrong = next(kind for kind in kinds if kind.startswith("both wrong"))
    at.selectbox(key="classify.which").set_value(both_wrong).run()
    titles = " ".join(chart.proto.spec for chart in at.get("plotly_chart"))
    expected = min(6, int(both_wrong.rsplit("(", 1)[1].rstrip(")").replace(",", "")))
    assert titles.count("teacher: wrong") == titles.count("student: wrong") == expected
    assert "right" not in titles and not at.exception


def test_a_classify_test_image_opens_on_the_softened_outputs_page_with_both_models(trained):
    from urllib.parse import parse_qsl

    at = open_page("classify_images")
    alone = run_of_role(trained, "student")  # not the Softened page's first choice (the distilled)
    at.selectbox(key="classify.student").set_value(alone).run()
    links = [link.proto for link in at.get("page_link")]
    assert len(links) == 6 and {link.page for link in links} == {"softened_outputs"}
    captions = [i.caption for image in at.get("image") for i in image.proto.imgs]
    settings = dict(parse_qsl(links[1].query_string))
    assert f"labelled {settings['softened.class']}" in shown_text(captions[1])
    teacher, student = at.selectbox(key="classify.teacher"), at.selectbox(key="classify.student")

    softened = AppTest.from_file(APP, default_timeout=60).run()
    softened.query_params.update(settings)  # the link, opened
    softened.switch_page("pages/softened_outputs.py").run()
    assert not softened.exception, [e.value for e in softened.exception]
    assert softened.selectbox(key="softened.teacher").value == teacher.value
    assert softened.selectbox(key="softened.student").value == student.value == alone
    assert softened.radio(key="softened.source").value == "test image"
    shown_class = softened.selectbox(key="softened.class")
    assert shown_class.options[shown_class.index] == settings["softened.class"]
    assert softened.number_input(key="softened.index").value == int(settings["softened.index"])
    assert "softened.temperature" not in settings  # a student alone: the page's own T

    distilled = run_of_role(trained, "distill")  # distilled at T = 4: the link opens at its T
    at.selectbox(key="classify.student").set_value(distilled).run()
    link = dict(parse_qsl(at.get("page_link")[0].proto.query_string))
    assert link["softened.temperature"] == "4"
    opened = AppTest.from_file(APP, default_timeout=60).run()  # the page reads T from a link
    opened.query_params.update({**link, "softened.temperature": "2.5"})
    opened.switch_page("pages/softened_outputs.py").run()
    assert opened.slider(key="softened.temperature").value == 2.5

    at.selectbox(key="classify.student").set_value("").run()  # no student: Softened needs two
    assert not at.get("page_link") and at.get("plotly_chart")


def test_an_empty_study_row_starts_its_run_from_the_compare_page(
    trained_root, empty_root, cifar_named_folder, monkeypatch
):
    from kdcore.study import study_rows

    shutil.copytree(trained_root, empty_root, dirs_exist_ok=True)  # runs with curves to compare
    monkeypatch.setenv("KDCORE_DATA", str(cifar_named_folder))  # the CIFAR-10 classes
    imagenet = study_rows([], str(cifar_named_folder))[1]["spec"]  # a try that failed offline
    failed = create_run(imagenet, empty_root)
    write_status(empty_root / failed, RunStatus(state="failed", error="no ImageNet weights here"))
    at = open_page("compare_runs")
    starts = [b.key for b in at.button if b.key and b.key.startswith("compare.study_start_")]
    # resnet101 teachers from scratch and from ImageNet (again), the student alone; a distilled
    # row waits for its teacher
    assert starts == [f"compare.study_start_{i}_btn" for i in (0, 1, 4)]
    assert "The last try failed: no ImageNet weights here" in [c.value for c in at.caption]
    at.selectbox(key="compare.study_arch").set_value("cifarnet").run()  # no ImageNet weights
    assert [b.key for b in at.button if b.key and "study_start" in b.key] == [
        "compare.study_start_0_btn", "compare.study_start_4_btn"]  # fmt: skip
    at.button(key="compare.study_start_4_btn").click().run()
    assert not at.exception and not at.error
    queued = [r for r in get_queue().runs() if r.spec.label == "study student alone"]
    assert len(queued) == 1 and queued[0].spec.data == str(cifar_named_folder)
    assert (queued[0].spec.epochs, queued[0].spec.train_subset) == (10, None)
    at.run()  # queued or training: no second start; finished: the row is filled
    assert "compare.study_start_4_btn" not in [b.key for b in at.button]


def test_classify_upload_refuses_bad_bytes_and_keeps_going(trained_root):
    from kdcore.checkpoints import load_model

    student, payload = load_model(next(trained_root.glob("*student*")) / "best.pt")
    models = {"student": (student, payload["classes"])}
    gif = b"GIF89a" + b"\x00" * 20
    assert "GIF" in classify_upload("a.gif", gif, models).error
    assert classify_upload("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 5, models).error
    good = classify_upload("ok.png", png_bytes(), models, k=4)
    assert good.error is None and len(good.top["student"]) == 4
    assert good.view.size == (32, 32)


def test_corrupt_checkpoint_gives_a_message_not_a_crash(trained_root, tmp_path, monkeypatch):
    root = use_root(monkeypatch, tmp_path / "copy")
    shutil.copytree(trained_root, root)
    teacher = next(root.glob("*teacher*"))
    (teacher / "best.pt").write_bytes(b"this is not a checkpoint")
    at = open_page("classify_images")
    assert at.error and "corrupt" in at.error[0].value
    softened = open_page("softened_outputs")
    assert softened.error and "Cannot load the weights" in softened.error[0].value


def test_a_run_whose_process_died_is_listed_as_interrupted(empty_root):
    run_id = create_run(TINY_STUDENT, empty_root)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    crashed = RunStatus(state="running", pid=gone.pid, heartbeat=time.time())
    write_status(empty_root / run_id, crashed)
    at = open_page()
    assert at.dataframe[0].value["status"].tolist() == ["interrupted"]
    assert load_run(run_id, empty_root).status == "interrupted"


def test_a_run_started_from_the_cli_is_shown_live_and_stopped_from_the_page(empty_root):
    command = [sys.executable, "-m", "kdcore", "student", "--data-dir", "synthetic",
               "--epochs", "500", "--train-subset", "1024", "--batch-size", "64",
               "--label", "from the CLI", "--out", str(empty_root)]  # fmt: skip
    cli = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        at = open_page("distill_student")
        poll_until(at, lambda at: any("step" in t for t in progress_texts(at)), timeout=60)
        assert any("from the CLI" in m.value for m in at.markdown)
        at.button(key="distill.live.stop_btn").click().run()
        out, _ = cli.communicate(timeout=60)
    finally:
        cli.kill()
    assert json.loads(out)["status"] == "stopped"
    poll_until(at, lambda at: any(t.startswith("stopped") for t in progress_texts(at)))


def test_a_second_distillation_reads_the_teacher_cache_and_says_so(trained_root, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    root = use_root(monkeypatch, tmp_path / "copy")
    shutil.copytree(trained_root, root)  # holds one distillation: the teacher's outputs are stored
    at = open_page("distill_student")
    assert "1 epoch of this teacher's outputs are stored" in at.info[0].value
    at.number_input(key="distill.epochs").set_value(2)
    at.number_input(key="distill.subset").set_value(512)
    at.slider(key="distill.temperature").set_value(8.0)
    at.button[0].click().run()

    def noted(at: AppTest) -> bool:  # the note reads the runs as the script starts, the live
        return any("from the teacher cache" in s.value for s in at.success)  # panel later

    poll_until(at, lambda at: "finished" in progress_texts(at) and noted(at))
    caption = " ".join(c.value for c in at.caption)
    assert "1 epoch from the cache, 1 computed" in caption
    assert any("read 1 epoch from the teacher cache" in s.value for s in at.success)


def test_the_teacher_averaged_with_the_mirror_is_a_setting_of_the_run(trained_root, tmp_path,
                                                                      monkeypatch):  # fmt: skip
    root = use_root(monkeypatch, tmp_path / "copy")
    shutil.copytree(trained_root, root)
    at = open_page("distill_student")
    at.number_input(key="distill.epochs").set_value(1)
    at.number_input(key="distill.subset").set_value(256)
    at.toggle(key="distill.teacher_flip").set_value(True)
    at.button[0].click().run()
    poll_until(at, lambda at: "finished" in progress_texts(at))
    newest = max(list_runs(root), key=lambda record: record.run_id)
    assert newest.spec.role == "distill" and newest.spec.teacher_tta == "flip"
    assert newest.run_status.teacher_cache["epochs_computed"] == 1  # not the stored plain outputs
    assert "teacher + mirror" in run_title(newest)


@pytest.mark.parametrize(
    ("page", "key"),
    [
        ("compare_runs", "compare.ids"),
        ("distill_student", "distill.overlay"),
        (None, "home.delete.ids"),
    ],
)
def test_a_rerun_leaves_the_browsers_run_pickers_alone(trained, page, key):
    """A page that hands a picker its value on every run would undo a click made meanwhile (the
    browser shows the script's value whenever the script sets it): only the first run sets it."""
    at = open_page(page)
    first = at.multiselect(key=key)
    assert first.proto.set_value and (key == "home.delete.ids" or first.value)
    at.run()
    again = at.multiselect(key=key)
    assert again.value == first.value and not again.proto.set_value


def test_page_choices_survive_a_visit_to_another_page(trained):
    at = open_page("compare_runs")
    at.slider(key="compare.smoothing").set_value(0.6).run()
    at.switch_page("pages/train_teacher.py").run()
    at.switch_page("pages/compare_runs.py").run()
    assert at.slider(key="compare.smoothing").value == 0.6
    assert not at.exception and not at.warning


def test_a_sweep_started_from_its_page_fills_its_heatmap_and_table(trained_root, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    root = use_root(monkeypatch, tmp_path / "copy")
    shutil.copytree(trained_root, root)
    at = open_page("sweeps")
    at.multiselect(key="sweep.temperatures").set_value([1.0, 4.0])
    at.multiselect(key="sweep.alphas").set_value([0.5])
    at.number_input(key="sweep.epochs").set_value(1)
    at.number_input(key="sweep.subset").set_value(1024)
    at.text_input(key="sweep.label").set_value("first grid")
    at.button[0].click().run()  # the form's Start button
    assert at.success and "3 runs queued" in at.success[0].value
    labels = {record.spec.label for record in list_runs(root) if "first grid" in record.spec.label}
    assert labels == {"first grid alone s0", "first grid T1-a0.5-s0", "first grid T4-a0.5-s0"}
    poll_until(at, lambda at: any(t.startswith("3/3 runs finished") for t in progress_texts(at)),
               timeout=180)  # fmt: skip
    table = at.dataframe[0].value
    assert table["setting"].tolist() == ["student alone", "T=1 α=0.5", "T=4 α=0.5"]
    assert table["done"].tolist() == ["1/1"] * 3 and table["gain (points)"].notna().sum() == 2
    heatmap = at.get("plotly_chart")[0]
    assert "student alone" in heatmap.proto.spec
    at.selectbox(key="sweep.cell").set_value((4.0, 0.5)).run()
    assert not at.exception
    drawn = chart_specs(at)["sweep.cell_chart"]["data"]
    cell = ("first grid alone s0", "first grid T4-a0.5-s0")
    shown = [r for r in list_runs(root) if r.spec.label in cell]
    colors = chart_colors(get_queue())  # each run in the colour it has on every other page
    assert {t["name"]: t["line"]["color"] for t in drawn} == {
        run_title(r): colors[r.run_id] for r in shown}  # fmt: skip
    at.segmented_control(key="sweep.metric").set_value("ece").run()
    assert not at.exception and at.get("download_button")


def test_a_sweep_that_held_out_a_validation_split_is_shown_on_it(trained_root, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    from kdcore.cli import main

    root = use_root(monkeypatch, tmp_path / "copy")
    shutil.copytree(trained_root, root)
    teacher = next(root.glob("*teacher*")).name
    assert main(["sweep", "--teacher", teacher, "-T", "2", "--alpha", "0.5", "--data-dir",
                 "synthetic", "--epochs", "1", "--train-subset", "256", "--val-split", "64",
                 "--out", str(root)]) == 0  # fmt: skip
    at = open_page("sweeps")
    assert at.session_state["sweep.metric"] == "val_acc"  # not the page's default, test accuracy
    control = at.segmented_control(key="sweep.metric")
    assert control.options[0] == "validation accuracy (%)"
    assert not [option for option in control.options if option.startswith("test accuracy")]
    columns = list(at.dataframe[0].value.columns)
    assert "validation accuracy (%) mean" in columns
    assert not [column for column in columns if column.startswith("test accuracy")]
    agreement = at.dataframe[0].value["validation agreement with the teacher (%) mean"]
    assert agreement.notna().all()  # read on the validation split too, for every row
    assert "validation expected calibration error" in control.options
    curves = chart_specs(at)["sweep.cell_chart"]["layout"]
    assert "validation accuracy" in curves["yaxis"]["title"]["text"]


def test_every_page_draws_beside_a_damaged_run_folder(trained_root, tmp_path, monkeypatch):
    root = use_root(monkeypatch, tmp_path / "copy")
    shutil.copytree(trained_root, root)
    student = next(root.glob("*student*"))
    (student / "metrics.jsonl").write_bytes(b"\xff\xfe not json\n")
    broken = shutil.copytree(student, root / "20990101-000000-student-smallcnn-dead")
    (broken / "config.json").write_text('{"role": 5}')
    at = open_page()
    runs = at.dataframe[0].value
    assert len(runs) == 4 and runs["status"].tolist().count("failed") == 1
    for page in ("train_teacher", "distill_student", "sweeps", "compare_runs",
                 "softened_outputs", "classify_images"):  # fmt: skip
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])


def test_text_from_users_is_shown_as_plain_text_on_every_page(trained_root, tmp_path,
                                                               monkeypatch):  # fmt: skip
    root = use_root(monkeypatch, tmp_path / "copy")
    shutil.copytree(trained_root, root)
    for config in root.glob("*/config.json"):
        config.write_text(json.dumps({**json.loads(config.read_text()), "label": HOSTILE}))
    at = open_page()
    at.sidebar.selectbox(key="app.data_choice").set_value("a folder or archive").run()
    at.sidebar.text_input(key="app.data_folder").set_value(f"{tmp_path}/{HOSTILE}").run()
    assert HOSTILE.replace("//", "/") in assert_shown_as_plain_text(at)
    at.switch_page("pages/train_teacher.py").run()
    assert f"Data: {tmp_path}/{HOSTILE}" in assert_shown_as_plain_text(at)
    at.switch_page("pages/distill_student.py").run()
    assert f"{HOSTILE} · " in assert_shown_as_plain_text(at)
    for page in ("sweeps", "compare_runs", "softened_outputs"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert_shown_as_plain_text(at)
    at.switch_page("pages/classify_images.py").run()
    assert_shown_as_plain_text(at)  # the test images, under pickers of hostile run names
    at.radio(key="classify.source").set_value("upload").run()
    files = [(f"{HOSTILE}.png", png_bytes(), "image/png"),
             (f"{HOSTILE}.jpg", b"not an image", "image/jpeg")]  # fmt: skip
    at.get("file_uploader")[0].set_value(files)
    at.run()
    shown = assert_shown_as_plain_text(at)
    assert f"{HOSTILE}.png" in shown and f"{HOSTILE}.jpg" in shown


# --- runs a user owns: resume, pickers, status, names, filters, deletion ------------------------


def copy_of(trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = use_root(monkeypatch, tmp_path / "copy")
    shutil.copytree(trained_root, root)
    return root


def run_of_role(root: Path, role: str) -> str:
    return next(r.run_id for r in get_queue().runs() if r.spec.role == role)


def test_pickers_start_on_the_newest_finished_teacher_not_an_interrupted_one(
    trained_root, tmp_path, monkeypatch
):
    root = copy_of(trained_root, tmp_path, monkeypatch)
    finished = run_of_role(root, "teacher")
    broken = "20990101-000000-teacher-cifarnet-beef"  # newer, with weights, but interrupted
    shutil.copytree(root / finished, root / broken)
    config = json.loads((root / broken / "config.json").read_text())
    config.update(id=broken, created_at=time.time() + 10, label="broken teacher")
    (root / broken / "config.json").write_text(json.dumps(config))
    write_status(root / broken, RunStatus(state="interrupted", phase="interrupted", error="killed"))
    for page in ("distill_student", "classify_images"):
        picker = open_page(page).selectbox(key=f"{page.split('_')[0]}.teacher")
        assert picker.value == finished
        assert any("broken teacher" in option for option in picker.options)  # still choosable


def fake_running(root: Path, spec: RunSpec, **fields) -> str:
    """A run whose status says running in this (live) process: it holds the queue's only slot."""
    run_id = create_run(spec, root)
    write_status(root / run_id, RunStatus(state="running", pid=os.getpid(), heartbeat=time.time(),
                                          started_at=time.time(), **fields))  # fmt: skip
    return run_id


def test_a_queued_run_shows_its_phase_and_the_eta_counts_down(empty_root, monkeypatch):
    monkeypatch.setenv("KDCORE_MAX_RUNS", "1")
    running = fake_running(empty_root, TINY_STUDENT, phase="epoch 1/5", epoch=1, epochs=5,
                           step=10, total_steps=100, eta_s=100.0,
                           eta_at=time.time() - 40)  # fmt: skip
    try:
        queued = create_run(RunSpec(**{**TINY_STUDENT.to_dict(), "seed": 1}), empty_root)
        write_status(empty_root / queued, RunStatus(phase="queued to resume after epoch 2"))
        at = open_page("distill_student")
        at.selectbox(key="distill.run_id").set_value(queued).run()
        (text,) = progress_texts(at)
        assert text == "queued to resume after epoch 2 · waits for 1 running (at most 1 at once)"
        at.selectbox(key="distill.run_id").set_value(running).run()
        eta = next(m.value for m in at.metric if m.label == "ETA")
        minutes, seconds = (int(n) for n in eta.split(":"))
        assert 55 <= 60 * minutes + seconds <= 60  # 100 s estimated 40 s ago, not a frozen 01:40
    finally:
        write_status(empty_root / running, RunStatus(state="stopped", phase="stopped"))


def test_a_stopped_run_resumes_from_its_page_after_its_last_whole_epoch(empty_root):
    from tests.test_resume import stopped_run

    spec = RunSpec(role="student", data="synthetic", epochs=3, train_subset=256, batch_size=32)
    run_id = stopped_run(empty_root, spec, epoch=2)
    at = open_page("distill_student")
    assert at.selectbox(key="distill.run_id").value == run_id
    at.button(key="distill.live.resume_btn").click().run()
    assert "Resuming at epoch 2 of 3: epoch 1 is kept." in [shown_text(t.value) for t in at.toast]
    poll_until(at, lambda at: "finished" in progress_texts(at))
    record = load_run(run_id, empty_root)
    assert record.status == "finished" and [row["epoch"] for row in record.metrics] == [1, 2, 3]
    assert not at.get("button") or not any(b.key.endswith("resume_btn") for b in at.button)


def test_runs_are_named_in_the_start_forms_and_shown_by_that_name(empty_root):
    at = open_page("train_teacher")
    at.text_input(key="teacher.label").set_value("my first teacher")
    at.number_input(key="teacher.epochs").set_value(1)
    at.number_input(key="teacher.subset").set_value(256)
    at.button[0].click().run()
    at.switch_page("pages/distill_student.py").run()
    at.text_input(key="distill.label").set_value("my first student")
    at.number_input(key="distill.subset").set_value(512)
    at.button[0].click().run()
    labels = {r.spec.role: r.spec.label for r in get_queue().runs()}
    assert labels == {"teacher": "my first teacher", "student": "my first student"}
    assert any(m.value.startswith("**my first student · ") for m in at.markdown)
    home = open_page()
    assert sorted(home.dataframe[0].value["label"]) == ["my first student", "my first teacher"]


def test_the_teacher_form_takes_the_recipes_optimiser_or_the_one_chosen(empty_root):
    at = open_page("train_teacher")
    assert at.selectbox(key="teacher.optimizer").value is None  # the recipe's
    assert at.selectbox(key="teacher.optimizer").proto.placeholder == "the recipe's"
    at.selectbox(key="teacher.optimizer").set_value("sgd")
    at.number_input(key="teacher.epochs").set_value(1)
    at.number_input(key="teacher.subset").set_value(256)
    at.button[0].click().run()
    (record,) = get_queue().runs()
    assert record.spec.optimizer == "sgd"
    assert record.spec.train_config().optimizer == "sgd"
    recipe = RunSpec(role="teacher", arch="cifarnet").train_config().optimizer
    assert recipe == "muon"


def test_the_forms_explain_alpha_t_epochs_and_the_subset():
    at = open_page("distill_student")
    widgets = [at.slider(key="distill.temperature"), at.slider(key="distill.alpha"),
               at.number_input(key="distill.epochs"),
               at.number_input(key="distill.subset")]  # fmt: skip
    for widget in widgets:
        assert widget.help and widget.help.endswith("."), widget.label
    defaults = RunSpec(role="distill")  # the form starts where the CLI does: the study's T, alpha
    assert [w.value for w in widgets[:3]] == [defaults.temperature, defaults.alpha, defaults.epochs]
    assert (defaults.temperature, defaults.alpha) == (2.0, 0.5)
    at.switch_page("pages/train_teacher.py").run()
    assert at.number_input(key="teacher.epochs").help and at.number_input(key="teacher.subset").help


def test_the_run_list_filters_by_role_status_data_and_name(trained):
    at = open_page()

    def shown() -> list[str]:
        return sorted(at.dataframe[0].value["role"]) if at.dataframe else []

    at.multiselect(key="home.filter.roles").set_value(["teacher", "distill"]).run()
    assert shown() == ["distill", "teacher"]
    assert any("2 of 3 runs match" in caption.value for caption in at.main.caption)
    at.multiselect(key="home.filter.roles").set_value([]).run()
    at.text_input(key="home.filter.text").set_value("TINY").run()  # the teacher's label
    assert shown() == ["teacher"]
    at.text_input(key="home.filter.text").set_value("").run()
    at.multiselect(key="home.filter.data").set_value(["synthetic"]).run()
    assert shown() == ["distill", "student", "teacher"]
    at.multiselect(key="home.filter.states").set_value(["failed", "interrupted"]).run()
    assert shown() == [] and "No run matches the filters." in [i.value for i in at.info]


def test_a_link_with_filters_opens_the_run_list_filtered(trained):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["home.filter.roles"] = "teacher"
    at.query_params["home.filter.text"] = "TINY"
    at.run()
    assert at.multiselect(key="home.filter.roles").value == ["teacher"]
    assert at.text_input(key="home.filter.text").value == "TINY"
    assert at.dataframe[0].value["role"].tolist() == ["teacher"]
    assert any("1 of 3 runs match" in caption.value for caption in at.main.caption)


def test_a_runs_link_opens_that_run_on_its_page_and_a_stale_one_is_let_go(trained):
    at = open_page()
    assert not at.get("page_link") and any("Tick a run's box" in c.value for c in at.main.caption)
    records = {record.spec.role: record for record in list_runs(trained)}
    for role, picker in (("student", "distill.run_id"), ("teacher", "teacher.run_id")):
        page, settings = run_page_link(records[role])  # what a ticked row of the table links to
        assert settings == {picker: run_title(records[role])}
        opened = AppTest.from_file(APP, default_timeout=60).run()
        opened.query_params.update(settings)
        opened.switch_page(page).run()
        assert not opened.exception, [e.value for e in opened.exception]
        # the distil page would start on the distilled student, the newest: the link wins
        assert opened.selectbox(key=picker).value == records[role].run_id
    page, settings = compare_link([records["teacher"], records["student"]])  # two rows ticked
    compared = AppTest.from_file(APP, default_timeout=60).run()
    compared.query_params.update(settings)
    compared.switch_page(page).run()
    chosen = compared.multiselect(key="compare.ids").value
    assert chosen == [records["teacher"].run_id, records["student"].run_id]
    stale = AppTest.from_file(APP, default_timeout=60).run()  # a run deleted since, say
    stale.query_params["distill.run_id"] = "gone · 0000"
    stale.switch_page("pages/distill_student.py").run()
    assert not stale.exception and stale.selectbox(key="distill.run_id").value in {
        records["student"].run_id,
        records["distill"].run_id,
    }


def test_runs_are_deleted_after_a_confirmation_and_a_teacher_asks_first(
    trained_root, tmp_path, monkeypatch
):
    root = copy_of(trained_root, tmp_path, monkeypatch)
    teacher, student = run_of_role(root, "teacher"), run_of_role(root, "student")
    distilled = run_of_role(root, "distill")
    at = open_page()
    at.multiselect(key="home.delete.ids").set_value([student]).run()
    at.button(key="home.delete.delete_btn").click().run()
    assert (root / student).is_dir()  # not before the confirmation
    at.button(key="home.delete.confirm_btn").click().run()
    assert not (root / student).exists()
    assert "Deleted 1 run." in [shown_text(t.value) for t in at.toast]
    assert sorted(at.dataframe[0].value["role"]) == ["distill", "teacher"]

    at.multiselect(key="home.delete.ids").set_value([teacher]).run()
    at.button(key="home.delete.delete_btn").click().run()
    assert any(distilled in shown_text(w.value) for w in at.warning)  # its dependant, named
    assert at.button(key="home.delete.confirm_btn").disabled
    at.checkbox(key="home.delete.anyway").check().run()
    at.button(key="home.delete.confirm_btn").click().run()
    assert not (root / teacher).exists() and (root / distilled).is_dir()


def test_a_running_run_cannot_be_deleted_until_it_is_stopped(empty_root):
    running = fake_running(empty_root, TINY_STUDENT, phase="epoch 1/1")
    try:
        at = open_page()
        at.multiselect(key="home.delete.ids").set_value([running]).run()
        at.button(key="home.delete.delete_btn").click().run()
        assert "cannot be deleted: stop" in at.warning[0].value
        assert (empty_root / running).is_dir()
        assert "home.delete.confirm_btn" not in [b.key for b in at.button]
    finally:
        write_status(empty_root / running, RunStatus(state="stopped", phase="stopped"))


def chart_specs(at: AppTest) -> dict[str, dict]:
    """Each plotly chart's figure (data, layout) by the key the page gave it."""
    return {chart.proto.id.split("-", 2)[-1]: json.loads(chart.proto.spec)
            for chart in at.get("plotly_chart")}  # fmt: skip


def chart_notes(at: AppTest, key: str) -> list[str]:
    return [note["text"] for note in chart_specs(at)[key]["layout"].get("annotations", [])]


def test_compare_curves_keep_colours_smooth_over_raw_and_draw_loss_terms(trained):
    at = open_page("compare_runs")
    charts = chart_specs(at)
    drawn = charts["compare.acc_chart"]["data"]
    colours = {trace["name"]: trace["line"]["color"] for trace in drawn}
    terms = [trace["name"] for trace in charts["compare.terms_chart"]["data"]]
    assert len(terms) == 4 and [name.split(" · ")[-1] for name in terms] == [
        "soft T²·KL", "hard CE", "agreement", "teacher right"]  # fmt: skip
    (student,) = [r.run_id for r in get_queue().runs() if r.spec.role == "student"]
    at.multiselect(key="compare.ids").set_value([student]).run()
    (alone,) = chart_specs(at)["compare.acc_chart"]["data"]
    assert alone["line"]["color"] == colours[alone["name"]]  # its colour whatever is selected
    assert "compare.terms_chart" not in chart_specs(at)  # no distilled run chosen
    at.toggle(key="compare.log_loss").set_value(True).run()
    at.slider(key="compare.smoothing").set_value(0.6).run()
    charts = chart_specs(at)
    assert charts["compare.loss_chart"]["layout"]["yaxis"]["type"] == "log"
    raw, smoothed = charts["compare.acc_chart"]["data"]
    assert raw["opacity"] < 0.5 and raw["hoverinfo"] == "skip"
    assert "raw" in smoothed["hovertemplate"]
    assert not at.exception


def test_compare_shows_per_class_accuracy_of_student_and_teacher(trained):
    at = open_page("compare_runs")
    at.selectbox(key="compare.evaluated").set_value(
        next(r.run_id for r in get_queue().runs() if r.spec.role == "distill")
    ).run()
    teacher, student = chart_specs(at)["compare.per_class_chart"]["data"]
    assert teacher["name"] == "teacher" and student["name"] == "student"
    assert len(student["x"]) == 10 and all(0 <= share <= 100 for share in student["y"])


def test_live_panel_draws_the_loss_on_a_log_scale_and_runs_in_their_own_colours(trained):
    at = open_page("distill_student")  # shows the distilled run, over the student alone
    overlay = chart_specs(at)["distill.live.overlay_chart"]["data"]
    at.toggle(key="distill.live.log_loss").set_value(True).run()
    live = chart_specs(at)["distill.live.live_chart"]["layout"]
    assert live["yaxis"]["type"] == "log" and "type" not in live["yaxis2"]
    compare = open_page("compare_runs")
    (student,) = [r.run_id for r in get_queue().runs() if r.spec.role == "student"]
    compare.multiselect(key="compare.ids").set_value([student]).run()
    (alone,) = chart_specs(compare)["compare.acc_chart"]["data"]
    assert {trace["name"]: trace["line"]["color"] for trace in overlay}[alone["name"]] == (
        alone["line"]["color"]
    )  # the same run, the same colour on both pages


def test_softened_outputs_mark_the_temperature_the_student_was_distilled_at(trained):
    at = open_page("softened_outputs")  # the distilled student (T = 4) comes first
    notes = chart_notes(at, "softened.sweep_chart")
    assert "student trained at T = 4" in notes
    assert any("distilled from this teacher at T = 4" in c.value for c in at.caption)
    alone = next(r.run_id for r in get_queue().runs() if r.spec.role == "student")
    at.selectbox(key="softened.student").set_value(alone).run()
    notes = chart_notes(at, "softened.sweep_chart")
    assert not any("trained at" in note for note in notes)
    assert any("trained alone" in c.value for c in at.caption)


def class_folder(root: Path, classes: list[str]) -> Path:
    for split in ("train", "test"):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            (root / split / name / "a.png").write_bytes(png_bytes(colour=(20 * k, 90, 160)))
    return root


@pytest.mark.parametrize(
    ("classes", "shown", "startable"),
    [
        (["cat", "dog"], "The classes do not match", False),
        ([f"pattern{k}" for k in range(10)], "images come from another source", True),
    ],
)
def test_the_distil_form_refuses_a_teacher_of_other_classes_and_warns_of_other_data(
    trained, tmp_path, classes, shown, startable
):
    data = class_folder(tmp_path / "data", classes)
    at = open_page()
    at.sidebar.selectbox(key="app.data_choice").set_value("a folder or archive").run()
    at.sidebar.text_input(key="app.data_folder").set_value(str(data)).run()
    at.switch_page("pages/distill_student.py").run()
    messages = [element.value for element in (*at.error, *at.warning)]
    assert any(shown in message for message in messages), messages
    start = next(b for b in at.button if b.label == "Start distillation")
    assert start.disabled is (not startable)


def test_the_distil_form_says_when_the_teacher_learnt_on_other_crops_than_the_studys(trained):
    at = open_page("distill_student")
    assert at.selectbox(key="distill.teacher").value  # the tiny CifarNet teacher, by default
    notes = [shown_text(c.value) for c in at.caption if "learnt on" in c.value]
    assert len(notes) == 1
    assert "crops padded by 2 with mirrored borders" in notes[0]  # CifarNet's recipe
    assert "crops padded by 4 with black borders" in notes[0]  # what distillation shows it


def test_compare_shows_the_gain_over_the_student_alone_and_its_seeds(trained):
    at = open_page("compare_runs")
    table = at.dataframe[0].value
    alone = table[table["role"] == "student"].iloc[0]
    distilled = table[table["role"] == "distill"].iloc[0]
    assert alone["gain (points)"] == 0.0 and alone["seed"] == 0
    expected = distilled["final test acc (%)"] - alone["final test acc (%)"]
    assert distilled["gain (points)"] == pytest.approx(expected, abs=0.01)
    assert pd.isna(table[table["role"] == "teacher"].iloc[0]["gain (points)"])  # other settings
    assert any("mean of 1 seed(s) (0)" in caption.value for caption in at.caption)


def test_a_shown_table_keeps_its_rounding_bolds_the_best_row_and_dashes_empty_cells():
    rows = [{"what": "a", "acc (%)": 10.0, "ece": 0.0123, "seed": 0, "gain": None},
            {"what": "b", "acc (%)": 51.5, "ece": None, "seed": 1, "gain": 2.41}]  # fmt: skip
    html = bold_best(rows, "acc (%)").to_html()
    cells = [re.sub("<[^>]+>", "", cell).strip() for cell in re.findall("<td.*?</td>", html)]
    assert cells == ["a", "10", "0.0123", "0", "–", "b", "51.5", "–", "1", "2.41"]
    bold = [rule for rule in re.findall(r"([^{}]+)\{([^}]*)\}", html) if "bold" in rule[1]]
    bold_cells = re.findall(r"_row(\d+)_col\d+", " ".join(selector for selector, _ in bold))
    assert bold_cells == ["1"] * len(rows[0])  # every cell of the best row, no other
    assert "bold" not in bold_best([{"what": "a", "acc (%)": None}], "acc (%)").to_html()


@pytest.mark.parametrize("page", [None, "compare_runs"])
def test_every_table_shows_an_empty_cell_as_a_dash_not_none(trained, page):
    """The browser shows a missing value as "None" unless the table names a placeholder; a
    Styler's own na_rep does not reach it."""
    at = open_page(page)
    tables = at.dataframe
    assert tables and all(table.proto.placeholder == EMPTY_CELL for table in tables)
    if page:  # the runs side by side: no run held out a validation split
        assert tables[0].value["final val acc (%)"].isna().all()
