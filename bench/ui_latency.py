"""Does the dashboard stay responsive while a run trains? Page latency idle vs. training.

    python bench/ui_latency.py [--repeats 8] [--arch cifarnet]

Starts `streamlit run app.py` on a free port (synthetic data, a temporary runs folder), drives it
with Chromium through Playwright and times, in the same process and on the same machine:
- home load: a fresh browser session opening the home page until its runs table is drawn;
- page switch: clicking a sidebar link until the new page's heading is drawn (one script run).
First with nothing training, then while a teacher run (started from the Train page) trains on
the manager's thread, which leaves the UI a core (kdcore.manager.default_training_threads).
Prints medians and the training/idle ratio.
"""

from __future__ import annotations

import argparse
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
CHROMIUM = "/usr/bin/chromium"


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
    page.locator('[data-testid="stDataFrame"], [data-testid="stAlert"]').first.wait_for()
    seconds = time.perf_counter() - started
    page.close()
    return seconds


def page_switch(page: Page, link: str, heading: str) -> float:
    started = time.perf_counter()
    page.get_by_role("link", name=link).click()
    page.get_by_role("heading", name=heading).wait_for()
    return time.perf_counter() - started


def measure(browser, url: str, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"home load": [], "page switch": []}
    page = browser.new_page()
    page.goto(url)
    page.get_by_role("heading", name="Runs").wait_for()
    for _ in range(repeats):
        times["home load"].append(home_load(browser, url))
        times["page switch"].append(page_switch(page, "Compare runs", "Compare runs"))
        times["page switch"].append(page_switch(page, "Home", "Knowledge distillation on CIFAR-10"))
    page.close()
    return times


def start_training(browser, url: str, arch: str) -> None:
    page = browser.new_page()
    page.goto(f"{url}/train_teacher")
    page.get_by_role("heading", name="Train a teacher").wait_for()
    page.get_by_label("Architecture").click()
    page.get_by_role("option", name=arch, exact=True).click()
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"running · epoch")).wait_for(timeout=120_000)
    page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--arch", default="cifarnet", help="the teacher trained meanwhile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        server, url = start_server(Path(folder) / "checkpoints")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            idle = measure(browser, url, args.repeats)
            start_training(browser, url, args.arch)
            busy = measure(browser, url, args.repeats)
        finally:
            browser.close()
            server.terminate()
            server.wait(timeout=10)
    print(f"{'':12} {'idle (s)':>9} {'training (s)':>13} {'ratio':>6}   median of {args.repeats}+")
    for name in idle:
        quiet, loaded = statistics.median(idle[name]), statistics.median(busy[name])
        print(f"{name:12} {quiet:9.3f} {loaded:13.3f} {loaded / quiet:6.2f}")


if __name__ == "__main__":
    main()
