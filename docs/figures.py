"""Render the README's figures from run folders, as PNGs, with the dashboard's own code.

    python docs/figures.py sweep --runs checkpoints --sweep SWEEP_ID --out docs/sweep_heatmap.png
    python docs/figures.py compare --runs checkpoints --data DATA --out docs/compare.png

`sweep`: the plotly figure is written as a self-contained HTML page (plotly.js inlined, nothing
fetched) and photographed by Chromium through Playwright, so no image-export package is needed.
`compare`: the dashboard is started on the runs folder and its Compare page photographed, with
the study's rows for CifarNet teachers.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from kdcore.plot_evaluation import sweep_heatmap
from kdcore.sweep import SweepSpec, read_sweep, summarise, sweep_dir

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]


def save_png(figure, out: Path, width: int = 900, height: int = 560) -> None:
    figure.update_layout(width=width, height=height)
    with tempfile.TemporaryDirectory() as folder:
        page_file = Path(folder) / "figure.html"
        page_file.write_text(figure.to_html(include_plotlyjs=True, full_html=True))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": width + 40, "height": height + 40})
            page.goto(page_file.as_uri())
            page.locator(".js-plotly-plot").wait_for()
            page.locator(".js-plotly-plot").screenshot(path=str(out))
            browser.close()


def compare_page_png(runs: Path, data: str, out: Path, teacher_arch: str) -> None:
    """The Compare page on `runs`, its study table for `teacher_arch` teachers on `data`."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "KDCORE_CHECKPOINTS": str(runs.resolve()), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://localhost:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.3)
        query = urllib.parse.urlencode(
            {"app.data_choice": "a folder or archive", "app.data_folder": data,
             "compare.study_arch": teacher_arch}
        )  # fmt: skip
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 4200})
            page.goto(f"{url}/compare_runs?{query}")
            page.get_by_role("heading", name="Compare runs").wait_for(timeout=120_000)
            page.get_by_text("To fill").first.wait_for(timeout=60_000)
            page.wait_for_timeout(3000)  # charts finish drawing
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("figure", choices=["sweep", "compare"])
    parser.add_argument("--runs", type=Path, default=Path("checkpoints"))
    parser.add_argument("--sweep", help="sweep: the sweep id (checkpoints/sweeps/<id>)")
    parser.add_argument("--metric", help="sweep: the colour (default: the accuracy it compares on)")
    parser.add_argument("--data", help="compare: the data source of the study's rows")
    parser.add_argument("--teacher-arch", default="cifarnet")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.figure == "compare":
        compare_page_png(args.runs, args.data, args.out, args.teacher_arch)
    else:
        values = read_sweep(sweep_dir(args.sweep, args.runs))
        summary = summarise(SweepSpec.from_dict(values["spec"]), values["trials"], args.runs)
        save_png(sweep_heatmap(summary, args.metric), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
