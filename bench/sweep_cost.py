"""What a sweep costs against its parts: one teacher pass plus K students trained alone.

    python bench/sweep_cost.py --data-dir DIR [--teacher RUN] [-T 1 4] [--alpha 0.5 0.9]
                               [--epochs 2] [--train-subset N] [--out DIR]

In one run of this script, with trials started as the sweep starts them (a process each):
1. a student trained alone, on a seed no cache has seen: its wall time;
2. a sweep of K = |T| x |alpha| distilled students on another fresh seed, one trial at a time,
   without baselines: its wall time, and the seconds its first trial spent on the teacher pass.
Prints the ratio sweep / (teacher pass + K x student alone); the goal is at most 1.10. Without
--teacher, a CifarNet teacher is trained for one epoch first (not timed).
The last line is a JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdcore.execute import execute_run  # noqa: E402
from kdcore.runs import RunSpec, create_run  # noqa: E402
from kdcore.status import read_status  # noqa: E402
from kdcore.sweep import SweepSpec, run_trials, start_sweep  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="synthetic")
    parser.add_argument("--teacher", help="a teacher run id under --out, or a checkpoint path")
    parser.add_argument("-T", "--temperature", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--out", type=Path, help="runs folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch) / "checkpoints"
        teacher = args.teacher or _quick_teacher(root, args.data_dir)
        training = {"data": args.data_dir, "epochs": args.epochs, "train_subset": args.train_subset}
        seeds = random.Random().sample(range(10_000, 1_000_000), 2)  # caches have not seen them

        started = time.perf_counter()
        alone = create_run(RunSpec(role="student", seed=seeds[0], **training), root)
        run_trials([alone], root, max_running=1)
        alone_s = time.perf_counter() - started

        spec = SweepSpec(teacher, tuple(args.temperature), tuple(args.alpha), (seeds[1],),
                         baseline=False, training=training)  # fmt: skip
        started = time.perf_counter()
        _, runs = start_sweep(spec, root)
        records = run_trials(list(runs.values()), root, max_running=1)
        sweep_s = time.perf_counter() - started
        caches = [read_status(record.folder).teacher_cache or {} for record in records]
        teacher_s = sum(cache.get("seconds_computing", 0.0) for cache in caches)
    trials = len(runs)
    expected = teacher_s + trials * alone_s
    result = {
        "data": args.data_dir,
        "epochs": args.epochs,
        "trials": trials,
        "student_alone_s": round(alone_s, 1),
        "teacher_pass_s": round(teacher_s, 1),
        "teacher_epochs_computed": sum(cache.get("epochs_computed", 0) for cache in caches),
        "sweep_s": round(sweep_s, 1),
        "sweep_over_parts": round(sweep_s / expected, 3),
    }
    print(f"student alone {alone_s:.1f} s; teacher pass {teacher_s:.1f} s; sweep of {trials} "
          f"trials {sweep_s:.1f} s = {sweep_s / expected:.3f} x (teacher pass + "
          f"{trials} x student alone)")  # fmt: skip
    print(json.dumps(result))


def _quick_teacher(root: Path, data: str) -> str:
    spec = RunSpec(role="teacher", arch="cifarnet", data=data, epochs=1, label="bench teacher")
    run_id = create_run(spec, root)
    execute_run(run_id, root)
    return run_id


if __name__ == "__main__":
    main()
