"""CifarNet recipes compared on a validation split, as the README's table of recipes reports them.

    python bench/cifarnet_recipes.py --data-dir ../shared/data/cifar10-jpeg.tar.gz --recipe default

Each recipe is the current default teacher recipe (`kdcore.recipes`) with a few settings changed.
It trains CifarNet for 10 epochs (seed 0) on the training split less `--val-split` held-out images
(5,000 by default: the same images for every recipe) and prints one JSON line per epoch, then one
with the last epoch's validation accuracy (alone and with the default's flip-and-translate TTA,
whatever the recipe) and the training time. The test split is evaluated too, as every run does,
but recipes are chosen on the validation figures.
`--out FILE` also appends that last line to FILE.

    python bench/cifarnet_recipes.py --data-dir DATA --recipe sgd --throughput 40

measures instead how fast the recipe trains against the default, in the same process: training
images/s of each over about 40 batches (after a warm-up), twice in turn, the better of each, and the
ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from kdcore import engine  # noqa: E402
from kdcore.bench import best_of_turns, engine_images_per_s  # noqa: E402
from kdcore.data import load_split  # noqa: E402
from kdcore.engine import Callback, fit, pick_device  # noqa: E402
from kdcore.models import CifarNet  # noqa: E402
from kdcore.runs import RunSpec  # noqa: E402

# name -> the settings that differ from the current default recipe
SGD = {"optimizer": "sgd"}  # every filter by SGD, as before Muon
ZERO_FILL = {**SGD, "crop_fill": "zero"}  # the crops before reflected ones
RECIPES: dict[str, dict] = {
    "default": {},
    "sgd": SGD,
    "muon, lr 0.03": {"muon_lr": 0.03},
    "muon, lr 0.0075": {"muon_lr": 0.0075},
    # airbench94_muon's momentum (0.6 at a batch of 2,000) with 1 - momentum scaled to 128
    "muon, momentum 0.974": {"muon_momentum": 0.974},
    # half the batch: every lr in proportion, Muon's 1 - momentum too
    "batch 64": {"batch_size": 64, "lr": 0.04, "muon_lr": 0.0075, "muon_momentum": 0.975},
    "zero fill": ZERO_FILL,
    # the recipe before lookahead and alternating flips
    "previous": {**ZERO_FILL, "lookahead": False, "flips": "random"},
    "previous, crop padding 4": {
        **ZERO_FILL,
        "lookahead": False,
        "flips": "random",
        "crop_padding": 4,
    },
    "label smoothing 0.2": {**ZERO_FILL, "label_smoothing": 0.2},
    # airbench's own lr and decay with label smoothing 0.2 (lr 11.5 per 1,024 images), rescaled
    "label smoothing 0.2, airbench lr and decay": {
        **ZERO_FILL,
        "label_smoothing": 0.2,
        "lr": 0.1875,
        "weight_decay": 1.33e-3,
    },
    # airbench94's lr schedule (0.2x to 1x over the first 23 % of steps, then linearly to 0.07x)
    # instead of one-cycle's, with SGD's momentum held at airbench's 0.85 as it holds it
    "airbench schedule": {"momentum": 0.85, "lr_schedule": "airbench"},
    "label smoothing 0.2, BatchNorm shifts without decay": {
        **ZERO_FILL,
        "label_smoothing": 0.2,
        "shift_decay": 0.0,
    },
}
SCRIPT_SETTINGS = ("shift_decay", "lr_schedule")  # what this script applies, not TrainConfig
TTA = "flip+translate"  # every recipe's validation accuracy is also read this way


def main() -> int:
    args = parse_args()
    if args.throughput:
        return print_throughput(args)
    changes = dict(RECIPES[args.recipe])
    shift_decay = changes.pop("shift_decay", None)
    if changes.pop("lr_schedule", None) == "airbench":
        engine.build_scheduler = _airbench_schedule
    spec = RunSpec(role="teacher", arch="cifarnet", epochs=args.epochs, seed=args.seed)
    config = dataclasses.replace(spec.train_config(), tta=TTA, **changes)
    train, val = load_split(args.data_dir, "train").split_off(args.val_split)
    test = load_split(args.data_dir, "test")
    torch.manual_seed(args.seed)
    model = CifarNet(len(train.classes))
    if shift_decay is not None:
        engine.build_optimizer = _with_shift_decay(engine.build_optimizer, shift_decay)
    started = time.perf_counter()
    result = fit(model, train, test, config, callbacks=[PrintRows()], val=val,
                 device=pick_device(args.device))  # fmt: skip
    last = result.history[-1]
    summary = {
        "recipe": args.recipe,
        "changes": RECIPES[args.recipe],
        "epochs": args.epochs,
        "seed": args.seed,
        "val_split": args.val_split,
        "seconds": round(time.perf_counter() - started, 1),
        **{k: last.get(k) for k in ("val_acc", "val_acc_tta", "test_acc", "test_acc_tta")},
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        with open(args.out, "a") as file:
            file.write(json.dumps(summary) + "\n")
    return 0


def print_throughput(args: argparse.Namespace) -> int:
    spec = RunSpec(role="teacher", arch="cifarnet", epochs=1, seed=args.seed)
    default = dataclasses.replace(spec.train_config(), tta="off")
    changes = {k: v for k, v in RECIPES[args.recipe].items() if k not in SCRIPT_SETTINGS}
    configs = {"default": default, args.recipe: dataclasses.replace(default, **changes)}
    train, test = load_split(args.data_dir, "train"), load_split(args.data_dir, "test")
    device = pick_device(args.device)

    def measure(config: engine.TrainConfig) -> float:
        torch.manual_seed(args.seed)
        model = CifarNet(len(train.classes))
        return engine_images_per_s(model, train, test, config, args.throughput, device)

    best = best_of_turns({name: functools.partial(measure, c) for name, c in configs.items()})
    summary = {
        "images_per_s": {name: round(value, 1) for name, value in best.items()},
        "ratio": round(best[args.recipe] / best["default"], 3),
        "batches": args.throughput,
        "device": str(device),
    }
    print(json.dumps(summary), flush=True)
    return 0


class PrintRows(Callback):
    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        print(json.dumps({k: round(v, 4) for k, v in logs.items()}), flush=True)


def _airbench_schedule(optimizer, config, steps_per_epoch):
    """airbench94's piecewise-linear lr: 0.2x, 1x after 23 % of the steps, 0.07x at the end."""
    total = config.epochs * steps_per_epoch
    peak = int(0.23 * total)

    def factor(step: int) -> float:
        if step < peak:
            return 0.2 + 0.8 * step / peak
        return 1.0 - 0.93 * (step - peak) / max(1, total - peak)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _with_shift_decay(build_optimizer, decay: float):
    """The engine's optimiser, its faster (lr-scaled) groups given weight decay `decay`."""

    def build(model, config):
        optimizer = build_optimizer(model, config)
        for group in optimizer.param_groups:
            if group["lr"] != config.lr:
                group["weight_decay"] = decay
        return optimizer

    return build


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--recipe", choices=list(RECIPES), default="default")
    parser.add_argument("--val-split", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--throughput", type=int, default=0, metavar="BATCHES",
        help="measure training speed against the default over this many batches instead",
    )  # fmt: skip
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
