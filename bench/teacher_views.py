"""How often is a teacher right on the views its students learn from? Beside its test accuracy.

    python bench/teacher_views.py --data-dir ../shared/data/cifar10-jpeg.tar.gz --teacher RUN_ID

Distillation shows the teacher the study's training views (crops padded by 4 with black borders,
random flips) whatever views the teacher itself learnt on, so a teacher can be good on the test
split and worse on those views. For one seed's schedule of views it prints the teacher's accuracy
on each epoch's views, then as its last line one JSON object with their mean and the teacher's
final test accuracy from its run. The outputs come from the teacher cache that distillation uses
(computed and stored there when missing), so a later distillation with the same seed reuses them.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from kdcore.checkpoints import load_model  # noqa: E402
from kdcore.data import load_split, source_fingerprint  # noqa: E402
from kdcore.metrics import accuracy  # noqa: E402
from kdcore.runs import load_run, teacher_checkpoint  # noqa: E402
from kdcore.teacher_cache import TeacherOutputs, cache_dir_for  # noqa: E402


def main() -> int:
    args = parse_args()
    checkpoint = teacher_checkpoint(args.teacher, args.out)
    teacher, _ = load_model(checkpoint, torch.device("cpu"))
    train = load_split(args.data_dir, "train")
    if args.val_split:
        train, _ = train.split_off(args.val_split)
    cache_dir = cache_dir_for(
        checkpoint, source_fingerprint(args.data_dir), args.val_split, len(train), args.seed
    )
    outputs = TeacherOutputs(
        teacher, train.images, args.seed, cache_dir, classes=len(train.classes)
    )
    never = threading.Event()
    accuracies = []
    for epoch in range(args.epochs):
        logits = outputs.epoch_logits(epoch, never)
        accuracies.append(accuracy(logits, train.labels))
        print(f"epoch {epoch + 1}: {accuracies[-1]:.2%}", file=sys.stderr, flush=True)
    summary = {
        "teacher": args.teacher,
        "seed": args.seed,
        "view_acc_per_epoch": [round(a, 4) for a in accuracies],
        "view_acc": round(sum(accuracies) / len(accuracies), 4),
        "test_acc": final_test_accuracy(args.teacher, args.out),
        **outputs.summary(),
    }
    print(json.dumps(summary))
    return 0


def final_test_accuracy(teacher: str, root: Path) -> float | None:
    """The teacher run's last recorded test accuracy; None for a bare checkpoint file."""
    if Path(teacher).suffix == ".pt":
        return None
    return load_run(teacher, root).final_test_acc


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--teacher", required=True, help="a finished teacher run id or a .pt file")
    parser.add_argument("--out", type=Path, default=Path("checkpoints"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--val-split", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
