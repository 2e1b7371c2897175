"""How fast the engine trains with the model compiled ($KDCORE_COMPILE) against without it.

    python bench/compile_speed.py --data-dir ../shared/data/cifar10-jpeg.tar.gz --mode default

In one process: training images/s of `fit` over about `--batches` batches (after a warm-up fit,
which pays for the compilation), plain and compiled in turn, twice, the better of each; then the
ratio, and the seconds the first compiled warm-up took beyond the first plain one (the cost of
compiling). The student by default, `--arch cifarnet` for the CPU's teacher, with the role's
recipe.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from kdcore.bench import best_of_turns, engine_images_per_s  # noqa: E402
from kdcore.data import load_split  # noqa: E402
from kdcore.engine import COMPILE_MODES, pick_device  # noqa: E402
from kdcore.models import STUDENT_ARCH, build_model  # noqa: E402
from kdcore.runs import RunSpec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--mode", default="default", choices=COMPILE_MODES[1:])
    parser.add_argument("--arch", default=STUDENT_ARCH, help="the student, or a teacher's arch")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    role = "student" if args.arch == STUDENT_ARCH else "teacher"
    config = RunSpec(role=role, arch=args.arch, epochs=1).train_config()
    train, test = load_split(args.data_dir, "train"), load_split(args.data_dir, "test")
    device = pick_device(args.device)
    first_s = {}

    def measure(mode: str) -> float:
        os.environ["KDCORE_COMPILE"] = mode
        torch.manual_seed(0)
        model = build_model(args.arch, len(train.classes))
        started = time.perf_counter()
        images_per_s = engine_images_per_s(model, train, test, config, args.batches, device)
        first_s.setdefault(mode, time.perf_counter() - started)
        return images_per_s

    best = best_of_turns({mode: functools.partial(measure, mode) for mode in ("off", args.mode)})
    os.environ.pop("KDCORE_COMPILE")
    summary = {
        "arch": args.arch,
        "images_per_s": best,
        "ratio": round(best[args.mode] / best["off"], 3),
        "compile_s": round(first_s[args.mode] - first_s["off"], 1),
        "batches": args.batches,
        "device": str(device),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
