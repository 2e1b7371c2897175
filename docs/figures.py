"""Render the README's figures from run folders, as PNGs, with the dashboard's own figure code.

    python docs/figures.py sweep --runs checkpoints --sweep SWEEP_ID --out docs/sweep_heatmap.png

The plotly figure is written as a self-contained HTML page (plotly.js inlined, nothing fetched)
and photographed by Chromium through Playwright, so no image-export package is needed.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from kdcore.plots import sweep_heatmap
from kdcore.sweep import SweepSpec, read_sweep, summarise, sweep_dir

CHROMIUM = "/usr/bin/chromium"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("figure", choices=["sweep"])
    parser.add_argument("--runs", type=Path, default=Path("checkpoints"))
    parser.add_argument("--sweep", required=True, help="the sweep id (checkpoints/sweeps/<id>)")
    parser.add_argument("--metric", default="test_acc")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    values = read_sweep(sweep_dir(args.sweep, args.runs))
    summary = summarise(SweepSpec.from_dict(values["spec"]), values["trials"], args.runs)
    save_png(sweep_heatmap(summary, args.metric), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
