"""Command lines of the workflow's jobs, built from the validated study config.

The one place where a job's `python -m densenet` command line is assembled: the rules take
their options from here (workflow/rules/common.smk joins them), the runners finish the command
here (densenet_argv, with_image_ref), and the manifest's rerun commands come from here
(cli_args). Each function returns a list of arguments, unit-tested without Snakemake.

What changes a result (train_args, gradcheck_args) is a rule param, which Snakemake reruns a
job for; how a job runs (runner_args, train_options, data_args) is not, so that a new GPU
policy, runner or thread count never retrains a finished cell.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import study
import yaml


def quote(args: Iterable[object]) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


def runner_args(
    cfg: Mapping[str, Any], torch: str, cell_dir: str, threads: int, data_dir: Optional[str] = None
) -> list[Union[str, int]]:
    """Options of workflow/scripts/run_cell.py (docs/contracts.md)."""
    args = ["--runner", cfg["runner"], "--torch", torch, "--cell-dir", cell_dir]
    args += ["--lock", cfg["containers"]["lock"], "--gpu", cfg["gpu"], "--threads", threads]
    if cfg["containers"]["strict_digests"]:
        args.append("--strict-digests")
    if cfg["runner"] == "venv":
        args += ["--venv-dir", cfg["containers"]["venv_dir"]]
    if data_dir:
        args += ["--data-dir", data_dir]
    return args


def train_args(cfg: Mapping[str, Any], params: Mapping[str, Any]) -> list[Union[str, int]]:
    """`densenet train` options of one cell (the runner adds --out and --data-dir).

    Training never downloads (prepare_data did, once); --require-official makes the trainer
    check the checksums itself too."""
    p, t = params, cfg["train"]
    args = ["--model", p["model"], "--dataset", p["dataset"], "--protocol", p["protocol"]]
    axes = ("augment", "optimizer", "recipe", "cudnn", "tf32", "deterministic", "canary", "seed")
    for axis in axes:
        args += ["--%s" % axis, p[axis]]
    args += ["--device", p["device"], "--download", "off"]
    args += ["--fast", t["fast"]]
    if t["compile"] == "on":  # only then: the params of studies without it stay as they were
        args += ["--compile", "on"]
    for key in ("epochs", "n_train", "n_test", "batch_size"):
        if t[key] is not None:
            args += ["--%s" % key.replace("_", "-"), t[key]]
    if cfg["data"]["require_official"]:
        args += ["--require-official", "on"]
    return args


def train_options(cfg: Mapping[str, Any]) -> list[str]:
    """`densenet train` options that do not change what a cell computes (not rule params,
    so switching them never retrains finished cells).

    A cell directory holds one config at a time: a checkpoint made under another (the study's
    options changed after an interrupt, or with keep_checkpoint on) is obsolete, so the
    trainer moves it aside and starts the cell afresh instead of failing it."""
    t = cfg["train"]
    args = ["--stale-checkpoint", "restart", "--keep-checkpoint", t["keep_checkpoint"]]
    return args + ["--overlap", t["overlap"]]


def gradcheck_args(cfg: Mapping[str, Any], env_params: Mapping[str, Any]) -> list[Union[str, int]]:
    """`densenet gradcheck` options of one environment."""
    g = cfg["gradcheck"]
    args = ["--model", g["model"], "--batch-size", g["batch_size"], "--seed", g["seed"]]
    args += ["--steps", g["steps"]]
    for key in ("cudnn", "tf32", "device", "canary"):
        args += ["--%s" % key, env_params[key]]
    return args


def data_args(cfg: Mapping[str, Any], action: str) -> list[str]:
    """How prepare_data.py gets the data (not a rule param: once the data is in place the
    action becomes `identify`, and that must not redo the job)."""
    args = ["--action", action]
    if action == "build":
        args += ["--builder", cfg["data"]["builder"]]
    return args


def densenet_argv(
    python: str, argv: Sequence[str], out: str, data_dir: Optional[str] = None
) -> list[str]:
    """The full command of one job: `PYTHON -m densenet SUBCOMMAND ... --out OUT [--data-dir
    DIR]`, with the paths as the started process sees them (inside a container: /cell, /data).
    argv is the subcommand and its options, as the rule gave them to run_cell.py."""
    args = [python, "-m", "densenet"] + list(argv) + ["--out", out]
    return args + (["--data-dir", data_dir] if data_dir else [])


# The densenet subcommands that record the image they ran in (--image-ref).
IMAGE_REF_COMMANDS = ("train", "gradcheck", "bench")


def subcommand(argv: Sequence[str]) -> Optional[str]:
    """The densenet subcommand in ["python", "-m", "densenet", SUB, ...], or None."""
    rest = argv[argv.index("densenet") + 1 :] if "densenet" in argv else []
    return rest[0] if rest else None


def with_image_ref(argv: Sequence[str], ref: str) -> list[str]:
    """densenet_argv's command with `--image-ref REF`, known only once the docker runner has
    resolved the image (tag@digest); unchanged for other subcommands or when already given."""
    if subcommand(argv) in IMAGE_REF_COMMANDS and "--image-ref" not in argv:
        return list(argv) + ["--image-ref", ref]
    return list(argv)


def progress_args(python: str, script: str, study_dir: str) -> list[str]:
    """The best-effort report re-render after each cell (publish_report.py --progress)."""
    manifest = os.path.join(study_dir, "manifest.json")
    return [python, script, "--progress", "--manifest", manifest, "--out", study_dir + "/report"]


def str_tag(text: str) -> str:
    """`text`, or `!!str text` where Snakemake's --config parser would read another value
    from it: it tries int() and float() first (so '1e5' and 'nan' become numbers), then YAML."""
    for number in (int, float):
        try:
            number(text)
            return "!!str " + text
        except ValueError:
            pass
    try:
        same = yaml.safe_load(text) == text
    except yaml.YAMLError:
        same = False
    return text if same else "!!str " + text


def cli_args(
    configfiles: Sequence[Union[str, os.PathLike[str]]], config: Mapping[str, Any]
) -> list[str]:
    """--configfile/--config as Snakemake was given them, for each cell's rerun command.

    One flag each, with all their values: Snakemake keeps only the last of repeated flags."""
    args = []
    if configfiles:
        args += ["--configfile"] + [os.path.relpath(str(p)) for p in configfiles]
    if config:
        args.append("--config")
        for key, value in sorted(config.items()):
            if isinstance(value, str):
                # A top-level value Snakemake already parsed: text stays text, and text that
                # YAML would read as a number (a study named 2024) is tagged as a string.
                args.append("%s=%s" % (key, str_tag(value)))
                continue
            value = study.typed(json.loads(json.dumps(value, default=dict)))
            text = value if isinstance(value, str) else json.dumps(value)
            args.append("%s=%s" % (key, text))
    return args
