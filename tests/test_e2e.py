"""The dashboard in a real browser: `streamlit run app.py` driven by Playwright and Chromium.

Starts a run from the home page, watches its live chart grow, stops it, classifies an uploaded
image with a teacher and a student trained before the server started, and visits every page,
saving a screenshot of each to artifacts/screenshots/. Visits every page with a run labelled as a
markdown image and finds no request leaving the server. Then kills the server with -9 while a run
trains, starts it again and finds the run still training, and kills the run with -9.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from PIL import Image
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from kdcore.batch_log import BatchLogTail
from kdcore.execute import execute_run
from kdcore.runs import RunSpec, create_run, list_runs, load_run, read_metrics

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
PAGES = {  # url path -> a text the page shows when it is drawn
    "": "Knowledge distillation on CIFAR-10",
    "train_teacher": "Train a teacher",
    "distill_student": "Distil a student",
    "sweeps": "Sweep T and alpha",
    "compare_runs": "Compare runs",
    "softened_outputs": "Softened outputs",
    "classify_images": "Classify images",
}
HOSTILE_LABEL = "![t](http://127.0.0.1:9/track.png) <b>x</b> :red[x]"  # a student's run label

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished teacher and student (labelled HOSTILE_LABEL), made before the server."""
    root = tmp_path_factory.mktemp("e2e") / "checkpoints"
    teacher = RunSpec(role="teacher", data="synthetic", arch="cifarnet", epochs=1,
                      train_subset=256, batch_size=32, label="e2e teacher")  # fmt: skip
    student = RunSpec(role="student", data="synthetic", epochs=1, train_subset=512, batch_size=64,
                      label=HOSTILE_LABEL)  # fmt: skip
    for spec in (teacher, student):
        execute_run(create_run(spec, root), root, device="cpu")
    return root


def start_server(root: Path, port: int, log_name: str = "server.log") -> subprocess.Popen:
    """`streamlit run app.py` on `root`, answering at localhost:port."""
    env = {**os.environ, "KDCORE_CHECKPOINTS": str(root), "KDCORE_DATA": "synthetic",
           "KDCORE_CACHE": str(root.parent / "cache")}  # fmt: skip
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.headless", "true"]  # fmt: skip
    with open(root.parent / log_name, "a") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(f"http://localhost:{port}", process)
    return process


def end(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def server(runs_root: Path) -> Iterator[str]:
    port = free_port()
    process = start_server(runs_root, port)
    try:
        yield f"http://localhost:{port}"
    finally:
        end(process)


@pytest.fixture(scope="module")
def page(server: str):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        yield context.new_page()
        browser.close()


def open_page(page, server: str, path: str):
    page.goto(f"{server}/{path}")
    page.get_by_role("heading", name=PAGES[path]).wait_for(timeout=30_000)
    return page


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)  # let charts finish drawing
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def plotted_points(page) -> int:
    """How many points the page's plotly charts hold (plotly keeps them on the chart's div)."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .flatMap(plot => plot.data || []).reduce((n, trace) => n + (trace.x || []).length, 0)""")


def chart_titles(page) -> list[str]:
    """The plotly charts' titles, without the <b> tags Streamlit's theme wraps them in."""
    titles = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .map(plot => (plot.layout && plot.layout.title && plot.layout.title.text) || '')""")
    return [re.sub(r"<[^>]+>", "", title) for title in titles]


def progress_text(page) -> str:
    texts = page.locator('[data-testid="stProgress"]').all_inner_texts()
    return " ".join(texts)


def current_step(page) -> int:
    """The step the progress bar reports ("running · epoch 1/3 · batch 7/32 · step 7/96")."""
    found = re.search(r"step (\d+)/", progress_text(page))
    return int(found.group(1)) if found else -1


def wait_until(page, condition, message: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        page.wait_for_timeout(300)


def test_start_watch_and_stop_a_run(page, server):
    open_page(page, server, "")
    page.locator('[data-testid="stDataFrame"]').wait_for(timeout=30_000)  # the runs table
    screenshot(page, "1_home")
    page.get_by_role("button", name=re.compile("Train a small student")).click()
    page.get_by_role("heading", name="Distil a student").wait_for(timeout=30_000)
    page.get_by_text(re.compile(r"running · epoch")).wait_for(timeout=60_000)
    first_points, first_step = plotted_points(page), current_step(page)
    wait_until(page, lambda: current_step(page) > first_step, "the progress text did not move")
    wait_until(page, lambda: plotted_points(page) > first_points, "the chart gained no points")
    screenshot(page, "3_distill_live")
    page.get_by_role("button", name="Stop this run").click()
    page.get_by_text(re.compile(r"^stopped")).first.wait_for(timeout=30_000)
    screenshot(page, "3_distill_stopped")


def test_a_run_started_from_the_cli_is_live_and_stoppable_in_the_browser(page, server, runs_root):
    command = [sys.executable, "-m", "kdcore", "student", "--data-dir", "synthetic",
               "--epochs", "500", "--train-subset", "1024", "--batch-size", "64",
               "--label", "from the CLI", "--out", str(runs_root)]  # fmt: skip
    cli = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        wait_until(page, lambda: list_runs(runs_root)[0].status == "running", "no CLI run", 60)
        open_page(page, server, "distill_student")
        page.get_by_role("combobox", name="Run shown below").click()
        page.get_by_role("option", name=re.compile("from the CLI")).click()
        page.get_by_text(re.compile(r"running · epoch")).wait_for(timeout=60_000)
        first_points, first_step = plotted_points(page), current_step(page)
        wait_until(page, lambda: current_step(page) > first_step, "the progress did not move")
        wait_until(page, lambda: plotted_points(page) > first_points, "the chart gained no points")
        screenshot(page, "3_distill_cli_run")
        page.get_by_role("button", name="Stop this run").click()
        out, _ = cli.communicate(timeout=60)
        page.get_by_text(re.compile(r"^stopped")).first.wait_for(timeout=30_000)
    finally:
        cli.kill()
    assert '"status": "stopped"' in out.decode()


def test_classify_test_images_then_an_upload_with_teacher_and_student(page, server):
    open_page(page, server, "classify_images")
    wait_until(page, lambda: any(t.startswith("teacher: ") for t in chart_titles(page)),
               "no test image classified")  # fmt: skip
    page.get_by_text("upload", exact=True).click()
    image = Image.new("RGB", (64, 48), (220, 60, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    files = [{"name": "red.png", "mimeType": "image/png", "buffer": buffer.getvalue()},
             {"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"not a jpeg"}]  # fmt: skip
    page.locator('input[type="file"]').set_input_files(files)
    page.get_by_text("broken.jpg is not an image").wait_for(timeout=30_000)
    wait_until(page, lambda: {"teacher", "student"} <= set(chart_titles(page)),
               "no top-k charts for both models")  # fmt: skip
    screenshot(page, "6_classify")


def test_a_classify_test_image_opens_on_the_softened_outputs_page(page, server):
    open_page(page, server, "classify_images")
    links = page.locator('a[href*="softened_outputs?"]:visible')  # one on each test image's card
    wait_until(page, lambda: links.count() == 6, "no Softened outputs link on the test images")
    settings = dict(parse_qsl(urlsplit(links.nth(1).get_attribute("href")).query))
    links.nth(1).click()
    page.get_by_role("heading", name="Softened outputs").wait_for(timeout=30_000)
    chosen = page.get_by_role("combobox", name="Class")
    number = page.get_by_role("spinbutton", name=re.compile(r"^Image"))
    wait_until(page, lambda: chosen.count() == 1 and number.count() == 1, "no image picker")
    assert chosen.input_value() == settings["softened.class"]
    assert number.input_value() == settings["softened.index"]
    at_t = f"softened probabilities at T = {RunSpec.temperature:g}"  # a student alone: the page's T
    wait_until(page, lambda: at_t in chart_titles(page), "no chart")


def test_ticked_rows_of_the_home_runs_table_open_that_run_or_compare_them(page, server, runs_root):
    teacher = next(r for r in list_runs(runs_root) if r.spec.label == "e2e teacher")
    page.goto(f"{server}/?home.filter.text=e2e+teacher")  # the filter leaves its row alone
    page.get_by_role("heading", name=PAGES[""]).wait_for(timeout=30_000)
    table = page.get_by_test_id("stDataFrame").first
    table.wait_for(timeout=30_000)
    box = table.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)  # the first row's box, under the header
    link = page.get_by_role("link", name=re.compile(r"^Open "))
    link.wait_for(timeout=30_000)
    assert teacher.run_id[-4:] in link.inner_text()
    assert "train_teacher?" in link.get_attribute("href")
    link.click()
    page.get_by_role("heading", name=PAGES["train_teacher"]).wait_for(timeout=30_000)
    picker = page.get_by_role("combobox", name="Run shown below")
    wait_until(page, lambda: teacher.run_id[-4:] in picker.input_value(), "not that run")

    page.goto(f"{server}/?home.filter.states=finished")  # runs with epochs, which Compare shows
    page.get_by_role("heading", name=PAGES[""]).wait_for(timeout=30_000)
    table = page.get_by_test_id("stDataFrame").first
    table.wait_for(timeout=30_000)
    box = table.bounding_box()
    for row in (0, 1):
        page.mouse.click(box["x"] + 16, box["y"] + 35 + 35 * row + 17)
    link = page.get_by_role("link", name="Compare these 2 runs")
    link.wait_for(timeout=30_000)
    link.click()
    page.get_by_role("heading", name=PAGES["compare_runs"]).wait_for(timeout=30_000)
    wait_until(page, lambda: page.url.count("compare.ids=") == 2, "not those two runs")


def test_a_sweep_fills_its_heatmap_and_a_click_on_a_cell_opens_its_runs(page, server):
    open_page(page, server, "sweeps")
    page.get_by_role("spinbutton", name="Epochs").fill("1")
    page.get_by_role("spinbutton", name="Training images (0 = all)").fill("1024")
    page.get_by_role("button", name="Start the sweep").click()
    page.get_by_text(re.compile(r"runs queued")).wait_for(timeout=30_000)
    page.get_by_text(re.compile(r"^(\d+)/\1 runs finished")).wait_for(timeout=240_000)
    cell = page.get_by_role("combobox", name="Cell (or click one in the heatmap)")

    def chosen_cell() -> str:  # "" while a redraw still shows the old picker beside the new one
        return cell.input_value() if cell.count() == 1 else ""

    wait_until(page, lambda: "T=1, α=0.1" in chosen_cell(), "the first cell is not chosen")
    heatmap = page.locator(".js-plotly-plot").first
    markers = heatmap.locator(".scatterlayer .point")  # one transparent marker on each cell
    markers.nth(markers.count() - 1).click(force=True)  # the last cell: the highest T and alpha
    wait_until(page, lambda: "T=8, α=0.9" in chosen_cell(), "the click chose no cell")
    assert "this cell's runs and the baseline" in chart_titles(page)
    screenshot(page, "7_sweep")


@pytest.mark.parametrize("path", ["train_teacher", "compare_runs", "softened_outputs"])
def test_every_page_draws(page, server, path):
    open_page(page, server, path)
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    name = {"train_teacher": "2_teacher", "compare_runs": "4_compare", "softened_outputs":
            "5_softened"}[path]  # fmt: skip
    screenshot(page, name)


FINISHED_SUCCESSFULLY = ForwardMsg.FINISHED_SUCCESSFULLY  # a script run of the whole page
FINISHED_FRAGMENT_RUN_SUCCESSFULLY = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY  # a fragment's


def run_ends(frames: list) -> list[int]:
    """How each script run ended, from the server's websocket frames (protobuf ForwardMsgs)."""
    messages = [ForwardMsg.FromString(frame) for frame in frames if isinstance(frame, bytes)]
    return [m.script_finished for m in messages if m.WhichOneof("type") == "script_finished"]


def test_compare_curves_read_right_and_smoothing_redraws_only_them(page, server):
    """Epoch ticks each once, hover labels whole and rounded, and a smoothing change that
    reruns the curves' fragment, not the page (the study table, the calibration charts)."""
    tab, frames = page.context.new_page(), []
    tab.on("websocket", lambda socket: socket.on("framereceived", lambda f: frames.append(f)))
    try:
        open_page(tab, server, "compare_runs")
        curves = tab.locator(".js-plotly-plot").first
        curves.wait_for(timeout=30_000)
        ticks = curves.locator(".xtick text").all_text_contents()
        assert ticks and len(ticks) == len(set(ticks)), ticks  # not "1 2 2 3 3"
        assert all(tick.lstrip("−-").isdigit() for tick in ticks), ticks
        curves.locator(".nsewdrag").first.hover()
        hover = tab.locator(".hoverlayer").first
        wait_until(tab, lambda: "%" in hover.text_content(), "no hover label on the curves")
        label = hover.text_content()
        assert "..." not in label and not re.search(r"\d\.\d{3}", label), label
        frames.clear()
        slider = tab.get_by_role("slider", name="Smoothing")
        slider.focus()
        slider.press("ArrowRight")
        whole, fragment = FINISHED_SUCCESSFULLY, FINISHED_FRAGMENT_RUN_SUCCESSFULLY
        wait_until(tab, lambda: {whole, fragment} & set(run_ends(frames)), "no rerun")
        assert run_ends(frames) == [fragment], run_ends(frames)
        assert tab.locator('[data-testid="stException"]').count() == 0
    finally:
        tab.close()


def leaves_the_server(url: str, server: str) -> bool:
    parts, home = urlsplit(url), urlsplit(server)
    local = (parts.hostname, parts.port) == (home.hostname, home.port)
    return parts.scheme not in ("data", "blob") and not local


def show_hostile_run(tab, timeout: float = 10.0) -> bool:
    """Pick the hostile-labelled run on the Distil page; whether its label heads the panel as
    text (the text has invisible word joiners in it, see ui/text.py)."""
    tab.get_by_role("combobox", name="Run shown below").fill("track.png")
    tab.get_by_role("option", name=HOSTILE_LABEL).click()
    headers = tab.locator('[data-testid="stMarkdownContainer"] strong')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(HOSTILE_LABEL in text.replace("\u2060", "") for text in headers.all_inner_texts()):
            return True
        tab.wait_for_timeout(300)
    return False


def test_no_request_leaves_the_server_and_labels_show_as_text(page, server):
    """Favicon, fonts, icons: all from this server; a run label that is a markdown image is text."""
    context = page.context.browser.new_context(viewport={"width": 1400, "height": 1800})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        tab = context.new_page()
        tab.on("websocket", lambda socket: requests.append(socket.url))
        for path in PAGES:
            open_page(tab, server, path)
            if path == "distill_student":
                label_shown = show_hostile_run(tab)
            tab.wait_for_timeout(500)  # late requests: images, the favicon
    finally:
        context.close()
    outside = [url for url in requests if leaves_the_server(url, server)]
    assert requests and not outside, outside
    assert label_shown


def test_server_log_is_clean(server, runs_root):
    log = (runs_root.parent / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def training_steps(root: Path) -> list[int]:
    """The steps in the batch log of the one run under `root`."""
    (record,) = list_runs(root)
    return [point["step"] for point in BatchLogTail(record.folder, max_points=10**9).read()]


def test_a_run_outlives_a_killed_server_and_its_own_kill_is_reported(page, tmp_path):
    root, port = tmp_path / "checkpoints", free_port()
    url = f"http://localhost:{port}"
    first = start_server(root, port, "restart.log")
    try:
        open_page(page, url, "distill_student")
        page.get_by_role("spinbutton", name="Epochs").fill("200")
        page.get_by_role("button", name="Start the student alone").click()
        page.get_by_text(re.compile(r"running · epoch")).wait_for(timeout=60_000)
        first.kill()  # -9: no clean-up
        first.wait()
        before = len(training_steps(root))
        second = start_server(root, port, "restart.log")
    finally:
        end(first)
    try:
        open_page(page, url, "distill_student")  # shows the newest active run
        step = current_step(page)
        wait_until(page, lambda: current_step(page) > step, "the run did not go on", timeout=60)
        steps = training_steps(root)
        assert len(steps) > before and steps == list(range(1, len(steps) + 1))  # no gap
        screenshot(page, "7_after_restart")
        (record,) = list_runs(root)
        os.kill(record.run_status.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        page.get_by_text(re.compile(r"^interrupted")).first.wait_for(timeout=10_000)
        assert time.monotonic() - killed_at <= 10
        screenshot(page, "7_run_killed")
    finally:
        end(second)
    log = (root.parent / "restart.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_every_page_url_opens_right_on_a_cold_server(page, runs_root):
    """Tabs opened straight at each page URL of a server no one has visited, all at once: each
    draws its page inside app.py's navigation and sidebar, and nothing raises."""
    port = free_port()
    url = f"http://localhost:{port}"
    process = start_server(runs_root, port, "cold.log")
    tabs = {path: page.context.browser.new_page() for path in PAGES}  # the module's browser
    try:
        for path, tab in tabs.items():
            tab.goto(f"{url}/{path}", wait_until="commit")  # before any script has run
        for path, tab in tabs.items():
            tab.get_by_role("heading", name=PAGES[path]).wait_for(timeout=90_000)
            navigation = tab.get_by_test_id("stSidebarNav")
            navigation.get_by_text("Compare runs").wait_for(timeout=10_000)  # app.py's titles
            assert navigation.get_by_text("app", exact=True).count() == 0, path  # not pages/
            tab.get_by_text("Data for new runs").wait_for(timeout=10_000)  # app.py's sidebar
            assert tab.get_by_test_id("stException").count() == 0, path
    finally:
        for tab in tabs.values():
            tab.close()
        end(process)
    log = (runs_root.parent / "cold.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def slider_value(page) -> str:
    """The value a page's (only) slider shows on its thumb."""
    return page.get_by_test_id("stSliderThumbValue").first.inner_text()


def test_a_link_or_a_reload_brings_back_the_view(page, server):
    """The data source, the runs compared, the pair, the image and T live in the page's URL."""
    open_page(page, server, "softened_outputs")
    slider = page.get_by_role("slider", name="Temperature T")
    slider.focus()
    for _ in range(6):
        page.keyboard.press("ArrowRight")  # T 2.0 (the study's, RunSpec's default) -> 3.5
    wait_until(page, lambda: "softened.temperature=3.5" in page.url, "T did not reach the URL")
    page.get_by_role("spinbutton", name=re.compile(r"^Image")).fill("3")
    page.keyboard.press("Enter")
    wait_until(page, lambda: "softened.index=3" in page.url, "the image did not reach the URL")
    link = page.url
    other = page.context.new_page()  # a new tab, a new session: only the link carries the view
    other.goto(link)
    other.get_by_role("heading", name="Softened outputs").wait_for()
    wait_until(other, lambda: slider_value(other) == "3.50", "T was not restored")
    image = other.get_by_role("spinbutton", name=re.compile(r"^Image"))
    wait_until(other, lambda: image.input_value() == "3", "the image was not restored")
    other.close()

    open_page(page, server, "compare_runs")
    runs = page.get_by_role("combobox", name="Runs", exact=True)
    page.get_by_role("button", name="Clear all").first.click()
    wait_until(page, lambda: "compare.ids" not in page.url, "clearing did not reach the URL")
    runs.click()
    page.keyboard.type("e2e teacher")  # the list only draws the options in view
    page.get_by_role("option", name=re.compile("e2e teacher")).click()
    page.keyboard.press("Escape")
    wait_until(page, lambda: "compare.ids=" in page.url, "the selection did not reach the URL")
    page.reload()
    page.get_by_role("heading", name="Compare runs").wait_for()
    chosen = page.get_by_test_id("stMultiSelect").filter(has=runs).inner_text()
    assert "e2e teacher" in chosen and "track.png" not in chosen

    page.goto(
        f"{server}/train_teacher?app.data_choice=a+folder+or+archive&app.data_folder=/nowhere"
    )
    page.get_by_text("Data folder /nowhere does not exist.").wait_for()
    folder = page.get_by_role("textbox", name="Folder or archive path")
    wait_until(page, lambda: folder.input_value() == "/nowhere", "the folder was not restored")


@pytest.fixture(scope="module", autouse=True)
def fresh_screenshots():
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    yield


def background_rgb(tab) -> tuple[int, ...]:
    """The computed background colour of the app's root element, as (r, g, b)."""
    colour = tab.evaluate(
        """() => getComputedStyle(document.querySelector('[data-testid="stApp"]'))
        .backgroundColor"""
    )
    return tuple(int(n) for n in re.findall(r"\d+", colour)[:3])


def is_dark(tab) -> bool:
    return sum(background_rgb(tab)) / 3 < 60  # Streamlit's dark is (23, 22, 20), light is white


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_app_follows_the_browsers_light_or_dark_preference(page, server, scheme):
    """The browser's preference picks the theme; the settings menu still offers the other."""
    context = page.context.browser.new_context(
        color_scheme=scheme, viewport={"width": 1400, "height": 1000}
    )
    try:
        tab = context.new_page()
        open_page(tab, server, "")
        tab.wait_for_timeout(500)
        assert is_dark(tab) == (scheme == "dark"), background_rgb(tab)
        assert scheme == "dark" or min(background_rgb(tab)) > 200, background_rgb(tab)
        screenshot(tab, f"8_home_{scheme}")
        other = "Light" if scheme == "dark" else "Dark"
        tab.get_by_test_id("stMainMenu").click()
        tab.get_by_test_id(f"stMainMenuItem-theme-{other}").click()
        wait_until(tab, lambda: is_dark(tab) != (scheme == "dark"), f"no switch to {other}")
    finally:
        context.close()


def test_a_killed_run_resumed_with_its_button_ends_finished_with_every_epoch(page, tmp_path):
    root, port = tmp_path / "checkpoints", free_port()
    url = f"http://localhost:{port}"
    spec = RunSpec(role="student", data="synthetic", epochs=5, train_subset=2048, batch_size=64,
                   label="killed, then resumed")  # fmt: skip
    run_id = create_run(spec, root)
    server = start_server(root, port, "resume.log")
    try:
        open_page(page, url, "distill_student")  # the queue starts the run; the page shows it
        wait_until(page, lambda: read_metrics(root / run_id), "no epoch ended", timeout=120)
        os.kill(load_run(run_id, root).run_status.pid, signal.SIGKILL)
        page.get_by_text(re.compile(r"^interrupted")).first.wait_for(timeout=30_000)
        assert len(read_metrics(root / run_id)) < spec.epochs
        page.get_by_role("button", name="Resume").click()
        page.get_by_text(re.compile(r"Resuming at epoch [2-5] of 5")).wait_for(timeout=30_000)
        page.get_by_text(re.compile(r"^finished")).first.wait_for(timeout=180_000)
        screenshot(page, "9_resumed")
    finally:
        end(server)
    record = load_run(run_id, root)
    assert record.status == "finished"
    assert [row["epoch"] for row in record.metrics] == [1, 2, 3, 4, 5]
    log = (root.parent / "resume.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_a_run_is_deleted_through_its_confirmation_dialog(page, server, runs_root):
    spec = RunSpec(role="student", data="synthetic", epochs=1, train_subset=256, batch_size=32,
                   label="to be deleted")  # fmt: skip
    run_id = create_run(spec, runs_root)
    execute_run(run_id, runs_root, device="cpu")
    open_page(page, server, "")
    page.get_by_role("combobox", name="Runs to delete").click()
    page.get_by_role("option", name=re.compile("to be deleted")).click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Delete…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(run_id).wait_for(timeout=10_000)
    assert (runs_root / run_id).is_dir()  # not before the confirmation
    dialog.get_by_role("button", name="Delete 1 run").click()
    dialog.wait_for(state="detached", timeout=10_000)  # the dialog closes
    page.get_by_text("Deleted 1 run.").wait_for(timeout=10_000)
    assert not (runs_root / run_id).exists()
