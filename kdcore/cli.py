"""`python -m kdcore`: the study's runs, headless. Every subcommand has `--help`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kdcore.augment import TEACHER_TTA_MODES
from kdcore.checkpoints import CheckpointError
from kdcore.data import DataError, load_split, source_status
from kdcore.engine import OPTIMIZERS, DeviceError, FitResult, compile_mode, pick_device
from kdcore.losses import DEFAULT_ALPHA, DEFAULT_TEMPERATURE
from kdcore.models import STEMS, TEACHER_ARCHS, TEACHER_INITS, ModelError, suggested_teacher_arch
from kdcore.progress import execute_in_terminal, train_in_terminal
from kdcore.runs import (
    RunError,
    RunSpec,
    checkpoint_of,
    list_runs,
    load_run,
    teacher_data_warning,
)
from kdcore.study_cli import reproduce_study

USER_ERRORS = (RunError, DataError, CheckpointError, ModelError, ValueError, OSError)


def default_data() -> str:
    return os.environ.get("KDCORE_DATA", "cifar10")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "device"):  # the command computes: $KDCORE_COMPILE must be known
            compile_mode()
            keep_freed_memory()
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kdcore",
        description="Knowledge distillation on CIFAR-10: teachers, students, distillation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    teacher = _command(commands, "teacher", "train a teacher with cross-entropy", run_teacher)
    _teacher_model_flags(teacher)
    teacher.add_argument(
        "--init",
        default="scratch",
        choices=TEACHER_INITS,
        help="scratch, ImageNet weights, or a local weights file (default scratch; ResNets only)",
    )
    _training_flags(teacher)

    student = _command(
        commands, "student", "train the SmallCNN student alone (baseline)", run_student
    )
    _training_flags(student)

    distill = _command(
        commands, "distill", "distil the SmallCNN student from a teacher", run_distill
    )
    distill.add_argument("--teacher", required=True, help="a teacher run id or a checkpoint path")
    _distillation_flags(distill)
    distill.add_argument(
        "--teacher-tta",
        choices=TEACHER_TTA_MODES,
        default="off",
        help="flip: the teacher's outputs on each view averaged with those on its mirror "
        "(twice the teacher's cost; default off)",
    )
    _training_flags(distill)

    execute = _command(
        commands,
        "execute",
        "train a queued run folder (the dashboard starts runs this way, each in its own process)",
        run_execute,
    )
    execute.add_argument("run_id", help="the id of a queued run under --out")
    _out_flag(execute)
    _device_flag(execute)
    execute.add_argument("--threads", type=int, help="CPU threads for training (default: all)")
    execute.add_argument(
        "--nice", type=int, default=0, help="lower this process's CPU priority by N (0-19)"
    )
    execute.add_argument(
        "--idle",
        action="store_true",
        help="give up a core at once to any other process that wakes (Linux's idle "
        "scheduling class; beside a busy process of its own session it gets next to nothing)",
    )

    resume = _command(
        commands,
        "resume",
        "continue a stopped, interrupted or failed run after its last whole epoch",
        run_resume,
    )
    resume.add_argument("run_id")
    _out_flag(resume)
    _device_flag(resume)

    stop = _command(
        commands, "stop", "ask a running run to stop at its next batch (or cancel a queued one)",
        run_stop,
    )  # fmt: skip
    stop.add_argument("run_id")
    _out_flag(stop)

    evaluate = _command(
        commands,
        "evaluate",
        "test accuracy, NLL, calibration and confusion matrix of a run (its final weights, stored "
        "in its folder as evaluation.json) or a checkpoint; with a teacher, the student's "
        "agreement with it and KL(teacher || student); a run that held out a validation split is "
        "measured on it too",
        run_evaluate,
    )
    evaluate.add_argument(
        "checkpoint", help="a run id (its last.pt, on the run's own data) or a checkpoint path"
    )
    evaluate.add_argument(
        "--teacher",
        help="a teacher run id or checkpoint to compare with (default: a distilled run's own)",
    )
    _out_flag(evaluate)
    _data_flags(evaluate)

    classify = _command(
        commands, "classify", "classify image files with a checkpoint", run_classify
    )
    classify.add_argument("checkpoint", help="a run id (its best.pt) or a checkpoint path")
    classify.add_argument("images", nargs="+", help="png, jpg, jpeg, webp or bmp files")
    classify.add_argument(
        "--top-k", type=_positive_int, default=3, help="how many classes to list (3)"
    )
    classify.add_argument("--temperature", "-T", type=float, default=1.0)
    _out_flag(classify)

    bench = _command(commands, "bench", "measure speed against the study's pipeline", run_bench)
    _data_flags(bench)
    bench.add_argument("--batches", type=int, default=60, help="timed batches per measurement")

    study = _command(commands, "study", "reproduce the study's five-row table", run_study)
    _training_flags(study)
    study.add_argument("--teacher-epochs", type=int, default=10, help="epochs for each teacher")
    _teacher_model_flags(study)
    _distillation_flags(study)

    sweep = _command(
        commands,
        "sweep",
        "distil students over a T x alpha x seed grid, with student-alone baselines; resumes",
        run_sweep,
    )
    sweep.add_argument("--teacher", required=True, help="a teacher run id or a checkpoint path")
    sweep.add_argument("--temperature", "-T", type=float, nargs="+", required=True)
    sweep.add_argument("--alpha", type=float, nargs="+", required=True)
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0])
    sweep.add_argument("--no-baseline", action="store_true", help="no student-alone runs")
    sweep.add_argument(
        "--parallel",
        type=_positive_int,
        help="trials at once (local default: $KDCORE_MAX_RUNS, else 1 on a CPU; with ray: as "
        "many as the cluster fits)",
    )
    sweep.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: this machine's run queue (the default); ray: Ray tasks on a local Ray or "
        "a cluster (pip install -r requirements-cluster.txt)",
    )
    sweep.add_argument(
        "--ray-address",
        help="with --executor ray: the cluster's head, HEAD:6379 or ray://HEAD:10001 (default: "
        "$RAY_ADDRESS, else a local Ray started for the sweep)",
    )
    sweep.add_argument(
        "--trial-cpus", type=_positive_int, help="with --executor ray: CPUs per trial (1)"
    )
    sweep.add_argument(
        "--trial-gpus",
        type=_gpu_share,
        help="with --executor ray: GPUs per trial, a fraction lets trials share a card (0)",
    )
    _training_flags(sweep, seed=False)

    runs = _command(commands, "runs", "list the runs in the checkpoints folder", run_list)
    _out_flag(runs)

    data = _command(commands, "data", "decode (or download) a data source into the cache", run_data)
    _data_flags(data)
    return parser


def _command(commands, name: str, help_text: str, handler) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def _out_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("checkpoints"), help="checkpoints folder")


def _teacher_model_flags(parser: argparse.ArgumentParser) -> None:
    suggested = suggested_teacher_arch()
    parser.add_argument(
        "--arch",
        default=suggested,
        choices=list(TEACHER_ARCHS),
        help=f"teacher architecture (default here: {suggested}; resnet101 with a GPU, "
        "cifarnet without)",
    )
    parser.add_argument(
        "--stem",
        choices=STEMS,
        help="ResNets: cifar (3x3 stride-1 conv, no max-pool; the default) or imagenet "
        "(torchvision's 7x7 stride-2 conv and max-pool)",
    )
    parser.add_argument(
        "--weights-file", help="ImageNet-shaped state_dict for --init imagenet/file"
    )


def _distillation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temperature",
        "-T",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help=f"softening T ({DEFAULT_TEMPERATURE:g})",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"weight of the soft term ({DEFAULT_ALPHA:g})",
    )


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=default_data(),
        help="train/<class>/ + test/<class>/ folder (or .tar.gz of one), a "
        "torchvision CIFAR-10 root, 'cifar10' (data/cifar10) or 'synthetic' "
        "(default: $KDCORE_DATA or cifar10)",
    )
    _device_flag(parser)


def _device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", type=_device, help="auto (CUDA when present), cpu or cuda[:N]"
    )


def _device(value: str) -> str:
    """A --device that exists here (checked before any run folder is made)."""
    try:
        pick_device(value)
    except DeviceError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {number})")
    return number


def _training_flags(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    _data_flags(parser)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (10)")
    _out_flag(parser)
    if seed:
        parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-subset", type=int, help="train on N images only (quick runs)")
    parser.add_argument(
        "--val-split",
        type=int,
        default=0,
        help="hold out N training images as a validation split (the same N images for every "
        "run); best.pt is then chosen on it, and each epoch reports val_acc",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--lr",
        type=float,
        help="peak learning rate (role default if omitted); with muon, of the parameters SGD "
        "steps, the conv filters keeping the recipe's Muon lr",
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="adamw, sgd or muon: the conv filters by Muon, the rest by SGD (role default)",
    )
    parser.add_argument("--weight-decay", type=float, help="weight decay (role default)")
    parser.add_argument("--label-smoothing", type=float, help="for cross-entropy (role default)")
    parser.add_argument("--label", default="", help="a name for the run")


def _spec(args: argparse.Namespace, role: str, **fields) -> RunSpec:
    return RunSpec(
        role=role,
        data=args.data_dir,
        epochs=args.epochs,
        seed=args.seed,
        train_subset=args.train_subset,
        val_split=args.val_split,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        label=args.label,
        **fields,
    )


def _train(spec: RunSpec, args: argparse.Namespace) -> int:
    run_id, result = train_in_terminal(spec, args.out, args.device)
    return _report(run_id, result)


def _report(run_id: str, result: FitResult) -> int:
    summary = {
        "run_id": run_id,
        "status": result.status,
        "best_test_acc": result.best_test_acc,
        "final_test_acc": result.history[-1]["test_acc"] if result.history else None,
    }
    for key in ("test_acc_tta", "val_acc", "val_acc_tta"):
        if result.history and key in result.history[-1]:
            summary[f"final_{key}"] = result.history[-1][key]
    print(json.dumps(summary))
    return 0 if result.status == "finished" else 1


def run_teacher(args: argparse.Namespace) -> int:
    spec = _spec(
        args,
        "teacher",
        arch=args.arch,
        stem=args.stem,
        init=args.init,
        weights_file=args.weights_file,
    )
    return _train(spec, args)


def run_student(args: argparse.Namespace) -> int:
    return _train(_spec(args, "student"), args)


def run_distill(args: argparse.Namespace) -> int:
    spec = _spec(
        args,
        "distill",
        teacher=args.teacher,
        temperature=args.temperature,
        alpha=args.alpha,
        teacher_tta=args.teacher_tta,
    )
    warning = teacher_data_warning(spec, args.out)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return _train(spec, args)


def run_execute(args: argparse.Namespace) -> int:
    if args.nice or args.idle:
        lower_priority(args.nice, idle_class=args.idle)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return _report(args.run_id, execute_in_terminal(args.run_id, args.out, args.device))


def run_resume(args: argparse.Namespace) -> int:
    from kdcore.execute import resume_run

    epochs_done = resume_run(args.run_id, args.out)
    start = f"after epoch {epochs_done}" if epochs_done else "from epoch 1 (no whole epoch saved)"
    print(f"{args.run_id}: resuming {start}", file=sys.stderr)
    return _report(args.run_id, execute_in_terminal(args.run_id, args.out, args.device))


def lower_priority(niceness: int, idle_class: bool = False) -> None:
    """Nice this process; on Linux with autogroups (a session each), its session's group too,
    since a process's own niceness only weighs against processes of its session.

    `idle_class` also moves each of its threads (and so those it starts) to Linux's idle
    scheduling class, where any other process that wakes takes the core at once. Within one
    session (or cgroup) such a process gets next to nothing beside a busy one; the queue starts
    every run in a session of its own, where it keeps its session's share."""
    os.nice(niceness)
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(niceness))
    if idle_class and hasattr(os, "SCHED_IDLE"):
        threads = os.listdir("/proc/self/task") if Path("/proc/self/task").is_dir() else ["0"]
        for thread in threads:  # "0": the calling thread
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setscheduler(int(thread), os.SCHED_IDLE, os.sched_param(0))


MALLOPT_TRIM_THRESHOLD, MALLOPT_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """glibc: serve large blocks (a batch's activations) from the heap and keep what is freed
    there, instead of mapping fresh pages for each block and faulting them in at first touch.
    The student's first epoch on the CPU trains about a quarter faster (2,100-2,200 against
    2,800-3,000 img/s, the later epochs as fast or faster), for at most 256 MB kept unused.
    False (and nothing done) where the C library is not glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mapped_from = 64 << 20  # larger blocks (a decoded split) are mapped, and unmapped when freed
    kept = 256 << 20  # freed memory the heap keeps at its top before giving it back
    return bool(
        mallopt(MALLOPT_MMAP_THRESHOLD, mapped_from) and mallopt(MALLOPT_TRIM_THRESHOLD, kept)
    )


def run_stop(args: argparse.Namespace) -> int:
    from kdcore.scheduler import RunQueue

    RunQueue(args.out, max_running=1).stop(args.run_id)
    print(f"{args.run_id}: {load_run(args.run_id, args.out).status}; stop requested")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from kdcore.checkpoints import load_model
    from kdcore.engine import pick_device
    from kdcore.evaluation import evaluate_checkpoint, evaluate_run

    if not args.checkpoint.endswith(".pt"):  # a run id: its final weights, stored in its folder
        report = evaluate_run(args.checkpoint, args.out, args.teacher, args.device)
    else:
        _, payload = load_model(args.checkpoint)
        spec = payload["meta"].get("spec") or {}
        teacher = args.teacher or spec.get("teacher")
        device = pick_device(args.device)
        weights, val_split = Path(args.checkpoint), spec.get("val_split") or 0
        report = evaluate_checkpoint(weights, args.data_dir, teacher, args.out, device, val_split)
        report["teacher"] = teacher
    print(json.dumps(report))
    return 0


def run_classify(args: argparse.Namespace) -> int:
    from kdcore.checkpoints import load_model
    from kdcore.inference import classify_upload

    model, payload = load_model(checkpoint_of(args.checkpoint, args.out))
    models = {"model": (model, payload["classes"])}
    failures = 0
    for name in args.images:
        try:
            data = Path(name).read_bytes()
        except OSError as error:
            data, failures = None, failures + 1
            print(json.dumps({"file": name, "error": f"{name} cannot be read: {error}"}))
        if data is None:
            continue
        result = classify_upload(name, data, models, args.top_k, args.temperature)
        if result.error:
            failures += 1
            print(json.dumps({"file": name, "error": result.error}))
            continue
        best = result.top["model"]
        print(json.dumps({"file": name, "top_k": [[label, round(p, 4)] for label, p in best]}))
    return 1 if failures else 0


def run_bench(args: argparse.Namespace) -> int:
    from kdcore.bench import run_benchmarks

    print(
        json.dumps(
            run_benchmarks(args.data_dir, batches=args.batches, device=args.device), indent=2
        )
    )
    return 0


def run_study(args: argparse.Namespace) -> int:
    return reproduce_study(args)


def run_sweep(args: argparse.Namespace) -> int:
    from kdcore import sweep
    from kdcore.scheduler import RunQueue

    training = {
        "data": args.data_dir, "epochs": args.epochs, "train_subset": args.train_subset,
        "val_split": args.val_split, "batch_size": args.batch_size, "lr": args.lr,
        "optimizer": args.optimizer, "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing,
    }  # fmt: skip
    spec = sweep.SweepSpec(
        teacher=args.teacher,
        temperatures=tuple(args.temperature),
        alphas=tuple(args.alpha),
        seeds=tuple(args.seeds),
        baseline=not args.no_baseline,
        training=training,
        label=args.label,
    )
    with _trial_runner(args, spec) as run_trials:  # Ray: checked and joined before any run exists
        sweep_id, runs = sweep.start_sweep(spec, args.out)
        print(f"sweep {sweep_id}: {len(runs)} trials -> {sweep.sweep_dir(sweep_id, args.out)}",
              file=sys.stderr)  # fmt: skip
        try:
            records = run_trials(list(runs.values()), args.out, args.parallel, _SweepProgress())
        except KeyboardInterrupt:
            queue = RunQueue(args.out, max_running=1)
            for run_id in runs.values():
                if queue.run(run_id).active:
                    queue.stop(run_id)
            raise
    sweep.evaluate_trials(spec, runs, args.out)
    summary = sweep.summarise(spec, runs, args.out)
    print_sweep_table(summary)
    failed = {r.run_id: r.run_status.error for r in records if r.status != "finished"}
    print(json.dumps({"sweep_id": sweep_id, "trials": runs, "failed": failed, **summary}))
    return 1 if failed else 0


@contextlib.contextmanager
def _trial_runner(args: argparse.Namespace, spec):
    """The sweep's trial runner: this machine's run queue, or Ray tasks (same signature)."""
    from kdcore import sweep

    ray_flags = (args.ray_address, args.trial_cpus, args.trial_gpus)
    if args.executor == "local":
        if any(flag is not None for flag in ray_flags):
            raise RunError("--ray-address, --trial-cpus and --trial-gpus need --executor ray.")
        yield sweep.run_trials
        return
    from kdcore.cluster import ray_trials

    cpus, gpus = args.trial_cpus or 1, args.trial_gpus or 0.0
    with ray_trials(spec, args.out, args.ray_address, cpus, gpus) as run_trials:
        yield run_trials


def _gpu_share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= share < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more (got {value})")
    return share


class _SweepProgress:
    """One line per change: trials done and what the running ones do (redrawn on a terminal)."""

    def __init__(self) -> None:
        self.last = ""

    def __call__(self, records) -> None:
        done = sum(not record.active for record in records)
        running = [record.run_status.phase for record in records if record.status == "running"]
        line = f"{done}/{len(records)} trials done; running: {', '.join(running) or '-'}"
        if line != self.last:
            self.last = line
            end = "\r" if sys.stderr.isatty() else "\n"
            print(line.ljust(78), end=end, file=sys.stderr, flush=True)


def print_sweep_table(summary: dict) -> None:
    key = summary.get("compared_on", "test_acc")

    def cell(row) -> str:
        mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
        if mean is None:
            return "-"
        return f"{mean:.2%}" + (f" ± {std:.2%}" if std is not None else "")

    if key == "val_acc":
        print("validation accuracy, final epoch (cells are compared on it, not on the test split)")
    else:
        print("test accuracy, final epoch")
    if summary["baseline"]:
        print(f"{'student alone':24s} {cell(summary['baseline']):>18s}")
    for row in summary["cells"]:
        gain = f"{row['gain'] * 100:+.2f}" if row["gain"] is not None else ""
        name = f"T={row['temperature']:g} alpha={row['alpha']:g}"
        print(f"{name:24s} {cell(row):>18s} {gain:>7s}")


def run_list(args: argparse.Namespace) -> int:
    for record in list_runs(args.out):
        best = f"{record.best_test_acc:.2%}" if record.best_test_acc is not None else "-"
        print(
            f"{record.run_id}  {record.spec.role:8s} {record.status:11s} "
            f"epochs {len(record.metrics)}/{record.spec.epochs}  best {best}  "
            f"{record.run_status.phase if record.active else record.run_status.error or ''}"
        )
    return 0


def run_data(args: argparse.Namespace) -> int:
    status = source_status(args.data_dir)
    print(status.message, file=sys.stderr)
    for split in ("train", "test"):
        image_set = load_split(args.data_dir, split)
        print(json.dumps({"split": split, "images": len(image_set), "classes": image_set.classes}))
    return 0
