"""The dashboard through Streamlit's AppTest: every page, runs started and polled, bad input,
text from users shown as text.

Runs train on the synthetic set with a few hundred images, so each takes seconds on a CPU.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from kdcore.execute import execute_run
from kdcore.inference import classify_upload
from kdcore.runs import RunSpec, create_run, load_run
from kdcore.status import RunStatus, write_status
from ui.context import get_queue

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


def test_home_shows_device_data_and_the_runs(trained):
    at = open_page()
    text = " ".join(m.value for m in at.markdown)
    assert "CPU cores" in text and "**Data:** synthetic — ready" in text
    runs = at.dataframe[0].value
    assert sorted(runs["role"]) == ["distill", "student", "teacher"]
    assert set(runs["status"]) == {"finished"}


def test_quick_start_trains_a_student_and_shows_it_live(empty_root):
    at = open_page()
    at.button(key="home.quick_student_btn").click().run()
    assert at.title[0].value == "Distil a student"
    poll_until(at, lambda at: any(t.startswith("running") for t in progress_texts(at)))
    assert at.button(key="distill.live.stop_btn").label == "Stop this run"


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
    study = at.dataframe[1].value  # the runs are on synthetic data: none is the study's protocol
    assert len(study) == 5 and (study["our runs"] == "–").all() and (study["n"] == 0).all()
    commands = [code.value for code in at.code]
    assert len(commands) == 5 and all("the CIFAR-10 classes" in c for c in commands)
    assert len(at.get("download_button")) == 3
    at.slider(key="compare.smoothing").set_value(0.6).run()
    assert not at.exception


def test_softened_outputs_show_kl_that_moves_with_temperature(trained):
    at = open_page("softened_outputs")
    assert len(at.get("plotly_chart")) == 2 and at.get("image")
    kl_at_4 = at.metric[0].value
    at.slider(key="softened.temperature").set_value(1.0).run()
    assert at.metric[0].value != kl_at_4 and "nats" in at.metric[0].value
    at.number_input(key="softened.index").set_value(5).run()
    at.radio(key="softened.source").set_value("upload").run()
    at.get("file_uploader")[0].set_value(("red.png", png_bytes(), "image/png"))
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_classify_uploads_each_file_on_its_own(trained):
    at = open_page("classify_images")
    files = [("red.png", png_bytes(), "image/png"), ("empty.png", b"", "image/png"),
             ("notes.jpg", b"not an image at all", "image/jpeg"),
             ("blue.png", png_bytes((20, 20), (0, 0, 255)), "image/png")]  # fmt: skip
    at.get("file_uploader")[0].set_value(files)
    at.run()
    assert not at.exception
    errors = [shown_text(e.value) for e in at.error]
    assert len(errors) == 2 and "empty.png is empty" in errors[0] and "notes.jpg" in errors[1]
    assert len(at.get("plotly_chart")) == 4  # teacher and student top-k for the two good files


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
    poll_until(at, lambda at: "finished" in progress_texts(at))
    caption = " ".join(c.value for c in at.caption)
    assert "1 epoch from the cache, 1 computed" in caption
    assert any("read 1 epoch from the teacher cache" in s.value for s in at.success)


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
    at.button[0].click().run()  # the form's Start button
    assert at.success and "3 runs queued" in at.success[0].value
    poll_until(at, lambda at: any(t.startswith("3/3 runs finished") for t in progress_texts(at)),
               timeout=180)  # fmt: skip
    table = at.dataframe[0].value
    assert table["setting"].tolist() == ["student alone", "T=1 α=0.5", "T=4 α=0.5"]
    assert table["done"].tolist() == ["1/1"] * 3 and table["gain (points)"].notna().sum() == 2
    heatmap = at.get("plotly_chart")[0]
    assert "student alone" in heatmap.proto.spec
    at.selectbox(key="sweep.cell").set_value((4.0, 0.5)).run()
    assert not at.exception
    at.segmented_control(key="sweep.metric").set_value("ece").run()
    assert not at.exception and at.get("download_button")


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
    files = [(f"{HOSTILE}.png", png_bytes(), "image/png"),
             (f"{HOSTILE}.jpg", b"not an image", "image/jpeg")]  # fmt: skip
    at.get("file_uploader")[0].set_value(files)
    at.run()
    shown = assert_shown_as_plain_text(at)
    assert f"{HOSTILE}.png" in shown and f"{HOSTILE}.jpg" in shown
