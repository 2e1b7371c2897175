"""Does the dashboard stay responsive while a run trains? Page latency idle vs. training.

    python bench/ui_latency.py [--repeats 8] [--tabs 5] [--arch cifarnet] [--idle-only N]

Starts `streamlit run app.py` on a free port (synthetic data, a temporary runs folder), drives it
with Chromium through Playwright and times, in the same process and on the same machine:
- home load: a fresh browser session opening the home page until its runs table is drawn (a
  finished run is made first, so the table is there in both phases);
- page switch: clicking a sidebar link until the new page's heading is drawn (one script run);
- tabs at once: `--tabs` fresh sessions opened together, until the last draws its runs table.
First with nothing training, then while a teacher run (started from the Train page) trains in
its own process, with the threads the run queue gives it (kdcore.scheduler.threads_per_run: all
cores but one), then idle again once that run is stopped. Prints medians and the training/idle
ratios; the last line is a JSON object with `fresh_tab_ratio`, `page_switch_ratio` and
`tabs_at_once_ratio` (training over the first idle phase), the first two over both idle
phases together (`..._bracketed`), and `idle_drift` (the second idle phase's page switch over
the first's: far from 1, the server or browser slowed on their own during the run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kdcore.runs import list_runs  # noqa: E402
from kdcore.scheduler import RunQueue  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def finished_run(root: Path) -> None:
    """A short finished run, so that both phases draw the same home page: a table of runs."""
    command = [sys.executable, "-m", "kdcore", "student", "--data-dir", "synthetic", "--epochs",
               "1", "--train-subset", "256", "--out", str(root)]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "KDCORE_CHECKPOINTS": str(root), "KDCORE_DATA": "synthetic"}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://localhost:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise TimeoutError("streamlit did not start")


def home_load(browser, url: str) -> float:
    """Seconds from navigation to the home page's runs table (a fresh session each time)."""
    page = browser.new_page()
    started = time.perf_counter()
    page.goto(url)
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    seconds = time.perf_counter() - started
    page.close()
    return seconds


def page_switch(page: Page, link: str, heading: str) -> float:
    started = time.perf_counter()
    page.get_by_role("link", name=link).click()
    page.get_by_role("heading", name=heading).wait_for()
    return time.perf_counter() - started


def tabs_at_once(browser, url: str, tabs: int) -> float:
    """Seconds from opening `tabs` fresh sessions together until every one shows its runs table."""
    pages = [browser.new_page() for _ in range(tabs)]
    started = time.perf_counter()
    for page in pages:
        page.goto(url, wait_until="commit")  # the browser loads them side by side
    for page in pages:
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=180_000)
    seconds = time.perf_counter() - started
    for page in pages:
        page.close()
    return seconds


def measure(browser, url: str, repeats: int, tabs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"home load": [], "page switch": [], "tabs at once": []}
    page = browser.new_page()
    page.goto(url)
    page.get_by_role("heading", name="Runs").wait_for()
    for _ in range(repeats):
        times["home load"].append(home_load(browser, url))
        times["page switch"].append(page_switch(page, "Compare runs", "Compare runs"))
        times["page switch"].append(page_switch(page, "Home", "Knowledge distillation on CIFAR-10"))
    page.close()
    for _ in range(max(1, repeats // 4)):
        times["tabs at once"].append(tabs_at_once(browser, url, tabs))
    return times


def start_training(browser, url: str, arch: str) -> None:
    page = browser.new_page()
    page.goto(f"{url}/train_teacher")
    page.get_by_role("heading", name="Train a teacher").wait_for()
    page.get_by_role("combobox", name="Architecture").click()
    page.get_by_role("option", name=arch, exact=True).click()
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"running · epoch")).wait_for(timeout=120_000)
    page.close()


def stop_training(root: Path) -> None:
    """Stop every active run and wait until none is left running."""
    queue = RunQueue(root, max_running=1)
    for record in list_runs(root):
        if record.active:
            queue.stop(record.run_id)
    deadline = time.monotonic() + 120
    while any(record.active for record in list_runs(root)):
        if time.monotonic() > deadline:
            raise TimeoutError("the training run did not stop within 120 s")
        time.sleep(0.5)


def idle_phases(args: argparse.Namespace) -> None:
    """Medians of `args.idle_only` idle phases against one server; the last over the first."""
    phases = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        finished_run(Path(folder) / "checkpoints")
        server, url = start_server(Path(folder) / "checkpoints")
        try:
            for _ in range(args.idle_only):
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox"]
                )
                phases.append(measure(browser, url, args.repeats, args.tabs))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    medians = {name: [statistics.median(p[name]) for p in phases] for name in phases[0]}
    for name, values in medians.items():
        print(f"{name:12} " + " ".join(f"{v:7.3f}" for v in values) + "   medians per phase (s)")
    print(json.dumps({f"{name.replace(' ', '_')}_last_over_first": round(v[-1] / v[0], 3)
                      for name, v in medians.items()}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--tabs", type=int, default=5, help="sessions opened together (5)")
    parser.add_argument("--arch", default="cifarnet", help="the teacher trained meanwhile")
    parser.add_argument("--idle-only", type=int, metavar="N", default=0,
                        help="instead: N idle phases in a row, nothing trained, each in a fresh "
                        "browser, to see whether the dashboard slows on its own")  # fmt: skip
    args = parser.parse_args()
    if args.idle_only:
        idle_phases(args)
        return
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        finished_run(Path(folder) / "checkpoints")
        server, url = start_server(Path(folder) / "checkpoints")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            idle = measure(browser, url, args.repeats, args.tabs)
            start_training(browser, url, args.arch)
            busy = measure(browser, url, args.repeats, args.tabs)
            stop_training(Path(folder) / "checkpoints")
            idle_after = measure(browser, url, args.repeats, args.tabs)
        finally:
            browser.close()
            server.terminate()
            server.wait(timeout=10)
    print(f"{'':12} {'idle (s)':>9} {'training (s)':>13} {'idle again':>11} {'ratio':>6}"
          f" {'bracketed':>10}   medians")  # fmt: skip
    ratios, bracketed = {}, {}
    for name in idle:
        quiet, loaded = statistics.median(idle[name]), statistics.median(busy[name])
        quiet_after = statistics.median(idle_after[name])
        ratios[name] = loaded / quiet
        bracketed[name] = loaded / statistics.median(idle[name] + idle_after[name])
        print(f"{name:12} {quiet:9.3f} {loaded:13.3f} {quiet_after:11.3f} {ratios[name]:6.2f}"
              f" {bracketed[name]:10.2f}")  # fmt: skip
    drift = statistics.median(idle_after["page switch"]) / statistics.median(idle["page switch"])
    summary = {
        "fresh_tab_ratio_bracketed": round(bracketed["home load"], 3),
        "page_switch_ratio_bracketed": round(bracketed["page switch"], 3),
        "idle_drift": round(drift, 3),
        "fresh_tab_ratio": round(ratios["home load"], 3),
        "page_switch_ratio": round(ratios["page switch"], 3),
        "fresh_tab_idle_s": round(statistics.median(idle["home load"]), 3),
        "page_switch_idle_s": round(statistics.median(idle["page switch"]), 3),
        "tabs_at_once_ratio": round(ratios["tabs at once"], 3),
        "tabs_at_once_idle_s": round(statistics.median(idle["tabs at once"]), 3),
        "tabs_at_once_training_s": round(statistics.median(busy["tabs at once"]), 3),
        "tabs": args.tabs,
        "repeats": args.repeats,
        "arch": args.arch,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
