"""Command line of the in-container package: models, env, train, gradcheck, bench.

Bad arguments give one line naming the argument and the allowed values, and exit code 2.
Exit codes of `train`: 0 completed, 1 failed, 2 usage, 3 diverged, 4 skipped.
"""

import argparse
import json
import sys
import traceback
from typing import Callable, Dict, List, Optional

import torch

from . import envinfo, numerics
from .argcheck import Parser
from .bench.benchmark import main as bench_main
from .bench.options import add_arguments as add_bench_arguments
from .bench.options import names_problem
from .celldir import STALE_CHECKPOINT, Cell, record_failure
from .data import DATASETS, FOLDERS, DataError
from .gradcheck.stage import main as gradcheck_main
from .models import MODEL_NAMES, STEMS, build_model, count_flops, count_params
from .options import (
    ON_OFF,
    add_cpu_malloc,
    add_numerics,
    add_overlap,
    out_dir,
    positive_float,
    positive_int,
    probability,
)
from .outcome import EXIT_FAILED, one_line
from .recipe import OPTIMIZERS, PROTOCOLS, resolve
from .train import run

__all__ = ["build_parser", "usage_problem", "main"]


def build_parser() -> Parser:
    """The parser of every subcommand."""
    parser = Parser(prog="python -m densenet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("models", help="model names, parameter counts, FLOPs per image")
    p.add_argument("--json", action="store_true")

    sub.add_parser("env", help="JSON: versions, devices, numerics flags")

    p = sub.add_parser("train", help="train one cell into --out")
    p.add_argument("--out", required=True, type=out_dir)
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--dataset", choices=DATASETS, default="cifar10")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", choices=ON_OFF, default="off")
    p.add_argument(
        "--require-official",
        choices=ON_OFF,
        default="off",
        help="refuse data whose checksums are not the official release's",
    )
    p.add_argument("--augment", choices=ON_OFF, default="on")
    p.add_argument("--augment-order", choices=("official", "bamos"), default="official")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="smoke")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument(
        "--eval-batch-size",
        type=positive_int,
        default=None,
        help="default: 500 on CUDA, the training batch on CPU (faster there, less memory)",
    )
    p.add_argument("--n-train", type=positive_int)
    p.add_argument("--n-test", type=positive_int)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--dropout", type=probability, help="default: 0.2 with --augment off, else 0")
    p.add_argument("--stem", choices=STEMS, default="paper")
    p.add_argument("--bias", choices=ON_OFF, default="off")
    p.add_argument(
        "--efficient",
        choices=ON_OFF,
        default="off",
        help="recompute bottlenecks in backward (less memory, same arithmetic)",
    )
    p.add_argument(
        "--fast", choices=("auto",) + ON_OFF, default="auto", help="auto: on for CUDA, off for CPU"
    )
    p.add_argument(
        "--compile",
        choices=ON_OFF,
        default="off",
        help="train through torch.compile (fused BN/ReLU/cat; reductions reordered, so not "
        "bitwise eager: densenet/compiled.py)",
    )
    add_overlap(p)
    add_cpu_malloc(p)
    p.add_argument("--keep-checkpoint", choices=ON_OFF, default="off")
    p.add_argument(
        "--stale-checkpoint",
        choices=STALE_CHECKPOINT,
        default="refuse",
        help="a checkpoint.pt made under another config: refuse (exit 1, the directory left "
        "as it was) or restart (move it to checkpoint.pt.stale, start from epoch 1; the "
        "workflow's choice, where such a checkpoint is obsolete)",
    )
    p.add_argument("--image-ref", default=None, help="image tag@digest, recorded in env.json")
    add_numerics(p)

    p = sub.add_parser("gradcheck", help="gradients vs a float64 CPU reference")
    p.add_argument("--out", required=True, type=out_dir)
    p.add_argument("--model", default="densenet-bc40-k12", choices=MODEL_NAMES)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument(
        "--steps",
        type=positive_int,
        default=3,
        help="training steps per run of the determinism check",
    )
    p.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        default="sgd",
        help="optimizer of the determinism check",
    )
    p.add_argument("--image-ref", default=None)
    add_numerics(p)

    p = sub.add_parser("bench", help="eager vs fast step, data pipeline, peak memory")
    add_bench_arguments(p)
    add_numerics(p)
    parser.commands = sub.choices  # name -> its parser, whose errors name the subcommand
    return parser


def cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name in MODEL_NAMES:
        model = build_model(name)
        rows.append(
            {"name": name, "params": count_params(model), "flops_per_img": count_flops(model)}
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("%-20s %12s %14s" % ("model", "params", "GFLOPs/img"))
    for r in rows:
        print(
            "%-20s %12s %14.3f" % (r["name"], "{:,}".format(r["params"]), r["flops_per_img"] / 1e9)
        )
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    print(
        json.dumps(
            {"environ": envinfo.environ(), "flags": numerics.read_flags()}, indent=1, sort_keys=True
        )
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = vars(args).copy()
    cfg.pop("command")
    if cfg["fast"] == "auto":
        cuda = cfg["device"] == "cuda" or (cfg["device"] == "auto" and torch.cuda.is_available())
        cfg["fast"] = "on" if cuda else "off"
    cfg = resolve(cfg)
    cell = Cell(cfg["out"])
    try:
        return run(cfg, cell=cell)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        reason = one_line(exc)
        if not isinstance(exc, (DataError, ValueError)):
            traceback.print_exc()
        sys.stderr.write("error: %s\n" % reason)
        record_failure(cell, cfg, reason)
        return EXIT_FAILED


COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {
    "models": cmd_models,
    "env": cmd_env,
    "train": cmd_train,
    "gradcheck": gradcheck_main,
    "bench": bench_main,
}


def usage_problem(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with a combination of arguments (one line), or None. Checked before any
    work, so a usage error writes nothing."""
    if args.command == "train" and args.compile == "on" and args.efficient == "on":
        # Dynamo breaks the graph at each checkpointed bottleneck and recompiles it for every
        # input width until its recompile limit, then runs the rest eagerly (seen on the CPU).
        return (
            "argument --compile: 'on' does not combine with --efficient on "
            "(checkpointed bottlenecks recompile per layer); use one of them"
        )
    if args.command in ("train", "bench") and args.dataset != "synthetic" and not args.data_dir:
        return "argument --data-dir: --dataset %s needs the folder holding %s" % (
            args.dataset,
            FOLDERS[args.dataset],
        )
    if args.command == "train" and args.dataset == "synthetic" and args.require_official == "on":
        # As the workflow refuses it: generated images have no official release to match.
        return "argument --require-official: 'on' contradicts --dataset synthetic; use off"
    if args.command == "bench" and args.probe:
        return names_problem(args)
    return None


def main(argv: Optional[List[str]] = None) -> int:
    """Parse `argv` (default: sys.argv), run the subcommand; returns its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = usage_problem(args)
    if problem:
        parser.commands[args.command].error(problem)
    return COMMANDS[args.command](args)
