"""Does distillation beat the student alone? Mean and spread over seeds, at settings fixed upfront.

    python bench/distill_gain.py --data-dir ../shared/data/cifar10-jpeg.tar.gz --teacher RUN_ID

For each seed it trains the student alone (the student recipe: label smoothing 0.1) and the
student distilled at each (T, alpha) given, with the same epochs, optimiser and label smoothing
in the hard term (`--label-smoothing 0.1 0` adds the study's plain CE as more settings). The
teacher's outputs are computed once per seed; the other settings read them from the cache.
`--teacher-tta flip` distils from the teacher's outputs averaged over each view and its mirror.
`--lr` gives every student, alone and distilled alike, another peak lr than the recipe's.
Runs already in `--out` with the same settings are reused, so an interrupted call resumes.
It prints one line per run and, last, one JSON object: for each setting the final-epoch test
accuracies, their mean and sample standard deviation, and the gain over the student alone.
No setting is chosen here: the accuracies are final-epoch ones, never the best epoch's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdcore.augment import TEACHER_TTA_MODES  # noqa: E402
from kdcore.progress import train_in_terminal  # noqa: E402
from kdcore.runs import RunSpec, list_runs  # noqa: E402


def main() -> int:
    args = parse_args()
    settings = [("alone", None, None, None)] + [
        (f"T={t:g} alpha={a:g} hard-term label smoothing {ls:g}", t, a, ls)
        for ls in args.label_smoothing
        for t, a in zip(args.T, args.alpha, strict=True)
    ]
    accuracies: dict[str, list[float]] = {name: [] for name, *_ in settings}
    for seed in args.seeds:
        for name, temperature, alpha, smoothing in settings:
            spec = spec_for(args, seed, temperature, alpha, smoothing)
            accuracy = final_accuracy(spec, args)
            accuracies[name].append(accuracy)
            print(f"seed {seed} {name}: {accuracy:.2%}", file=sys.stderr, flush=True)
    print(json.dumps(summarise(accuracies), indent=2))
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--teacher", required=True, help="a finished teacher run id")
    parser.add_argument("--out", type=Path, default=Path("checkpoints"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--lr", type=float, help="every student's peak lr, alone and distilled (the recipe's)"
    )
    parser.add_argument("-T", type=float, nargs="+", default=[2.0, 4.0])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument(
        "--label-smoothing",
        type=float,
        nargs="+",
        default=[0.1],
        help="of the distilled students' hard term, each value a setting (default: the recipe's "
        "0.1, as for the student alone; 0 is the study's loss)",
    )
    parser.add_argument(
        "--teacher-tta",
        choices=TEACHER_TTA_MODES,
        default="off",
        help="the distilled students' teacher outputs: on each view, or averaged with its mirror",
    )
    parser.add_argument("--device", default="auto")
    return parser.parse_args()


def spec_for(args: argparse.Namespace, seed: int, temperature, alpha, smoothing) -> RunSpec:
    common = {"data": args.data_dir, "epochs": args.epochs, "seed": seed, "lr": args.lr}
    if temperature is None:
        return RunSpec(role="student", label="distill-gain student alone", **common)
    return RunSpec(
        role="distill",
        teacher=args.teacher,
        temperature=temperature,
        alpha=alpha,
        label_smoothing=smoothing,
        teacher_tta=args.teacher_tta,
        label="distill-gain distilled",
        **common,
    )


def final_accuracy(spec: RunSpec, args: argparse.Namespace) -> float:
    """The final-epoch test accuracy of a finished run of `spec`, training one if none exists."""
    for record in list_runs(args.out):
        if (
            record.spec == spec
            and record.status == "finished"
            and record.train_config() == spec.train_config()
        ):  # the same settings, and the recipe they resolved to when it trained
            return record.final_test_acc
    _, result = train_in_terminal(spec, args.out, args.device)
    if result.status != "finished":
        raise SystemExit(f"run of {spec} ended {result.status}")
    return result.history[-1]["test_acc"]


def summarise(accuracies: dict[str, list[float]]) -> dict[str, dict[str, object]]:
    alone = statistics.mean(accuracies["alone"])
    summary = {}
    for name, values in accuracies.items():
        mean = statistics.mean(values)
        summary[name] = {
            "test_acc": [round(v, 4) for v in values],
            "mean": round(mean, 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "gain_over_alone": round(mean - alone, 4),
        }
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
