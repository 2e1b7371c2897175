"""Does the dashboard stay responsive while a run trains? Page latency, training against paused.

    python bench/ui_latency.py [--rounds 8] [--tabs 5] [--arch cifarnet]

Starts `streamlit run app.py` on a free port (synthetic data, a temporary runs folder), drives it
with Chromium through Playwright and times, in the same process and on the same machine:
- fresh tab: a fresh browser session opening the home page until its runs table is drawn (a
  finished run is made first, so the table is there throughout);
- page switch: clicking a sidebar link until the new page's heading is drawn (one script run);
  one sample is the mean of a round trip Home -> Compare runs -> Home, since the two pages
  differ in cost and single switches fall in two groups that make a median jump between them;
- tabs at once: `--tabs` fresh sessions opened together, until the last draws its runs table.

First once with no run at all, for reference. Then it starts a teacher run from the Train page
(its own process, with the threads the run queue gives it: kdcore.scheduler.threads_per_run) and
measures blocks in turn with that run's process group stopped (SIGSTOP: the run is there and the
pages draw the same things, but it takes no CPU) and training (SIGCONT), `--rounds` times in the
order paused-training, training-paused, ... Phases measured minutes apart drift: two idle phases
of one server differed by up to 1.6x with nothing trained, more than the effect looked for.
Alternated blocks share that drift. The run's CPU time is read in every block: none while
paused, and in the training blocks what the niced run got beside the busy pages.

Prints medians and ratios; the last line is a JSON object with `fresh_tab_ratio`,
`page_switch_ratio` and `tabs_at_once_ratio` (training over paused) with 90 % bootstrap intervals,
their medians, the run's CPU use in each kind of block (cores), and the no-run medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
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
from kdcore.status import STALE_AFTER_SECONDS  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
MEASURES = ("fresh tab", "page switch", "tabs at once")


def finished_run(root: Path) -> None:
    """A short finished run, so that every block draws the same home page: a table of runs."""
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


def measure(browser, page: Page, url: str, switches: int, tabs: int) -> dict[str, list[float]]:
    """One block: a fresh tab, `switches` round trips Home -> Compare runs -> Home, tabs at once."""
    times: dict[str, list[float]] = {name: [] for name in MEASURES}
    times["fresh tab"].append(home_load(browser, url))
    for _ in range(switches):
        there = page_switch(page, "Compare runs", "Compare runs")
        back = page_switch(page, "Home", "Knowledge distillation on CIFAR-10")
        times["page switch"].append((there + back) / 2)
    times["tabs at once"].append(tabs_at_once(browser, url, tabs))
    return times


def start_training(browser, url: str, arch: str) -> None:
    page = browser.new_page()
    page.goto(f"{url}/train_teacher")
    page.get_by_role("heading", name="Train a teacher").wait_for()
    page.get_by_role("combobox", name="Architecture").click()
    page.get_by_role("option", name=arch, exact=True).click()
    page.get_by_role("spinbutton", name="Epochs").fill(
        "200"
    )  # it outlasts the bench; stopped after
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"running · epoch")).wait_for(timeout=120_000)
    page.close()


def training_group(root: Path) -> int:
    """The process group of the one run that trains (the queue starts each run in its own)."""
    pids = [r.run_status.pid for r in list_runs(root) if r.active and r.run_status.pid]
    if len(pids) != 1:
        raise RuntimeError(f"expected one training run, found {len(pids)}")
    return os.getpgid(pids[0])


def group_cpu_seconds(group: int) -> float:
    """User + system CPU seconds of the live processes of a process group."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def ratio_interval(
    training: list[float], paused: list[float], draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A 90 % bootstrap interval of median(training) / median(paused), each resampled alone."""
    rng = random.Random(seed)
    ratios = sorted(
        statistics.median(rng.choices(training, k=len(training)))
        / statistics.median(rng.choices(paused, k=len(paused)))
        for _ in range(draws)
    )
    return ratios[int(0.05 * draws)], ratios[int(0.95 * draws) - 1]


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


def alternated(browser, url: str, root: Path, args: argparse.Namespace) -> dict[str, dict]:
    """Blocks with the run paused and training, in turn; times and the run's CPU use (cores)."""
    group = training_group(root)
    times = {kind: {name: [] for name in MEASURES} for kind in ("paused", "training")}
    cpu = {kind: [0.0, 0.0] for kind in times}  # CPU seconds, wall seconds
    page = browser.new_page()
    page.goto(url)
    page.get_by_role("heading", name="Runs").wait_for()
    try:
        for round_ in range(args.rounds):
            order = ("paused", "training") if round_ % 2 == 0 else ("training", "paused")
            for kind in order:
                os.killpg(group, signal.SIGSTOP if kind == "paused" else signal.SIGCONT)
                time.sleep(1.0)  # the run gets going again, or its last batch's work drains
                cpu_before, started = group_cpu_seconds(group), time.monotonic()
                block = measure(browser, page, url, args.switches, args.tabs)
                wall = time.monotonic() - started
                if kind == "paused" and wall > STALE_AFTER_SECONDS - 5:
                    print(f"warning: a paused block took {wall:.0f} s; the dashboard may have "
                          "called the run interrupted (fewer --tabs)", file=sys.stderr)  # fmt: skip
                cpu[kind][0] += group_cpu_seconds(group) - cpu_before
                cpu[kind][1] += wall
                for name, values in block.items():
                    times[kind][name] += values
            if not any(record.active for record in list_runs(root)):
                raise RuntimeError("the run ended before the bench did: fewer --rounds")
    finally:
        with contextlib.suppress(ProcessLookupError):  # the run may have ended meanwhile
            os.killpg(group, signal.SIGCONT)
        page.close()
    return {"times": times, "cores": {kind: c / w for kind, (c, w) in cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="paused/training pairs of blocks")
    parser.add_argument("--switches", type=int, default=3, help="page-switch round trips a block")
    parser.add_argument("--tabs", type=int, default=5, help="sessions opened together (5)")
    parser.add_argument("--arch", default="cifarnet", help="the teacher trained meanwhile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        root = Path(folder) / "checkpoints"
        finished_run(root)
        server, url = start_server(root)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("heading", name="Runs").wait_for()
            no_run = measure(browser, page, url, args.switches * 2, args.tabs)
            page.close()
            start_training(browser, url, args.arch)
            result = alternated(browser, url, root, args)
            stop_training(root)
        finally:
            browser.close()
            server.terminate()
            server.wait(timeout=10)
    times, cores = result["times"], result["cores"]
    medians = {
        kind: {name: statistics.median(v) for name, v in t.items()} for kind, t in times.items()
    }
    intervals = {name: ratio_interval(times["training"][name], times["paused"][name])
                 for name in MEASURES}  # fmt: skip
    print(f"{'':12} {'no run (s)':>10} {'paused (s)':>11} {'training (s)':>13} {'ratio':>6}"
          f" {'90 % interval':>14}   medians")  # fmt: skip
    for name in MEASURES:
        paused, training = medians["paused"][name], medians["training"][name]
        low, high = intervals[name]
        print(f"{name:12} {statistics.median(no_run[name]):10.3f} {paused:11.3f} {training:13.3f}"
              f" {training / paused:6.2f} {low:6.2f} - {high:4.2f}")  # fmt: skip
    print(
        f"the run's CPU use: {cores['paused']:.2f} cores paused, {cores['training']:.2f} training"
    )
    summary = {
        **{f"{name.replace(' ', '_')}_ratio": round(
            medians["training"][name] / medians["paused"][name], 3) for name in MEASURES},
        **{f"{name.replace(' ', '_')}_ratio_90": [round(v, 3) for v in intervals[name]]
           for name in MEASURES},
        **{f"{name.replace(' ', '_')}_{kind}_s": round(medians[kind][name], 3)
           for kind in medians for name in MEASURES},
        **{f"{name.replace(' ', '_')}_no_run_s": round(statistics.median(no_run[name]), 3)
           for name in MEASURES},
        "run_cores_paused": round(cores["paused"], 3),
        "run_cores_training": round(cores["training"], 3),
        "samples": {name: len(times["training"][name]) for name in MEASURES},
        "rounds": args.rounds,
        "tabs": args.tabs,
        "arch": args.arch,
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
