"""Where the engine's training time goes: `fit` over a few batches under torch.profiler.

    python bench/engine_profile.py --data-dir ../shared/data/cifar10-jpeg.tar.gz --device cuda

After a warm-up fit, one fit of about `--batches` batches is profiled. Printed: the ops that
took the most time (the device's on a GPU, the host's on a CPU), then one JSON line with the
profiled wall seconds, the seconds the device was busy and their share of the wall time (a
launch- or sync-bound engine keeps a GPU idle most of the time), the kernel launches and the
host-device syncs per batch. The profiler's own overhead makes the share a lower bound.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from kdcore.bench import WARMUP_BATCHES  # noqa: E402
from kdcore.data import load_split  # noqa: E402
from kdcore.engine import fit, pick_device  # noqa: E402
from kdcore.models import STUDENT_ARCH, build_model  # noqa: E402
from kdcore.runs import RunSpec  # noqa: E402

SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--arch", default=STUDENT_ARCH, help="the student, or a teacher's arch")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--top", type=int, default=12, help="how many ops to list")
    args = parser.parse_args(argv)

    role = "student" if args.arch == STUDENT_ARCH else "teacher"
    config = RunSpec(role=role, arch=args.arch, epochs=1).train_config()
    train, test = load_split(args.data_dir, "train"), load_split(args.data_dir, "test")
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = build_model(args.arch, len(train.classes))
    subset = train.subset(args.batches * config.batch_size)
    batches = -(-len(subset) // config.batch_size)
    fit(model, subset.subset(WARMUP_BATCHES * config.batch_size), test.subset(10), config,
        device=device)  # fmt: skip
    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as profiler:
        started = time.perf_counter()
        fit(model, subset, test.subset(10), config, device=device)
        if on_gpu:
            torch.cuda.synchronize(device)
        wall_s = time.perf_counter() - started
    averages = profiler.key_averages()
    by_name = {event.key: event for event in averages}
    busy_s = sum(event.self_device_time_total for event in averages) / 1e6 if on_gpu else None
    sort_by = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    print(averages.table(sort_by=sort_by, row_limit=args.top), flush=True)

    def per_batch(names: tuple[str, ...]) -> float:
        return round(sum(by_name[name].count for name in names if name in by_name) / batches, 2)

    summary = {
        "arch": args.arch,
        "device": str(device),
        "batches": batches,
        "wall_s": round(wall_s, 3),
        "device_busy_s": None if busy_s is None else round(busy_s, 3),
        "device_busy_share": None if busy_s is None else round(busy_s / wall_s, 3),
        "kernel_launches_per_batch": per_batch(LAUNCHES),
        "syncs_per_batch": per_batch(SYNCS),
        "item_calls_per_batch": per_batch(("aten::item",)),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
