"""`python -m kdcore study`: the study's five runs in its protocol, then its table beside ours."""

from __future__ import annotations

import argparse
import json
import sys

from kdcore.models import ModelError
from kdcore.progress import train_in_terminal
from kdcore.runs import RunError, RunSpec, list_runs
from kdcore.study import Protocol, study_rows


def reproduce_study(args: argparse.Namespace) -> int:
    """Train both teachers, the student alone and a student from each teacher; print the table.

    A teacher that cannot be built (ImageNet weights offline) is reported and its rows stay empty.
    """
    common = {
        "data": args.data_dir,
        "seed": args.seed,
        "train_subset": args.train_subset,
        "val_split": args.val_split,
        "batch_size": args.batch_size,
    }
    teachers = {}
    for init in ("scratch", "imagenet"):
        spec = RunSpec(
            role="teacher",
            arch=args.arch,
            stem=args.stem,
            init=init,
            weights_file=args.weights_file,
            epochs=args.teacher_epochs,
            lr=args.lr,
            label=f"study teacher ({init})",
            **common,
        )
        teachers[init] = _train_or_report(spec, args)
    _train_or_report(
        RunSpec(role="student", epochs=args.epochs, label="study student alone", **common), args
    )
    for init, teacher_id in teachers.items():
        if teacher_id is None:
            print(
                f"skipping the student distilled from the {init} teacher: no teacher",
                file=sys.stderr,
            )
            continue
        spec = RunSpec(
            role="distill",
            teacher=teacher_id,
            epochs=args.epochs,
            temperature=args.temperature,
            alpha=args.alpha,
            label=f"study student from {init} teacher",
            **common,
        )
        _train_or_report(spec, args)
    protocol = Protocol(
        teacher_arch=args.arch,
        teacher_epochs=args.teacher_epochs,
        epochs=args.epochs,
        train_subset=args.train_subset,
        val_split=args.val_split,
        temperature=args.temperature,
        alpha=args.alpha,
    )
    print_table(study_rows(list_runs(args.out), args.data_dir, protocol), protocol)
    return 0


def _train_or_report(spec: RunSpec, args: argparse.Namespace) -> str | None:
    try:
        run_id, result = train_in_terminal(spec, args.out, args.device)
    except (RunError, ModelError) as error:
        print(f"== {spec.label}: not run: {error}", file=sys.stderr)
        return None
    return run_id if result.status == "finished" else None


def print_table(rows: list[dict], protocol: Protocol) -> None:
    """The rows (ours: mean final test accuracy, with the spread and seeds), then as JSON."""
    differences = protocol.differences()
    print(
        "protocol: " + ("the study's" if not differences else "differs: " + "; ".join(differences))
    )
    print(f"{'setting':44s} {'study':>7s} {'ours':>16s}  arch / runs")
    for row in rows:
        ours = "-"
        if row["our_acc"] is not None:
            spread = f" ± {row['our_std']:.2%}" if row["our_std"] is not None else ""
            ours = f"{row['our_acc']:.2%}{spread} (n={row['n']})"
        what = ", ".join(row["run_ids"]) or row["command"]
        print(f"{row['setting']:44s} {row['study_acc']:7.2%} {ours:>16s}  {row['arch']}: {what}")
    print(json.dumps([{**row, "spec": row["spec"] and row["spec"].to_dict()} for row in rows]))
