"""The workflow as Snakemake sees it, without training: the paper study's full matrix in a dry
run under 5 s (with a pinned lock: strict studies refuse unpinned images), the profiles' dry
runs, the loud synthetic fallback, each job's command in a dry
run, `snakemake --lint` down to the explained lints and snakefmt clean."""

import json
import os
import re
import resource
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO
from helpers import pipeline_helpers
from helpers.pipeline_helpers import job_counts

SCHEMA = os.path.join(REPO, "workflow", "schemas", "config.schema.yaml")
sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))
import image_lock  # noqa: E402


@pytest.fixture
def pinned(tmp_path):
    """--config of a copy of the lock with every registry image pinned. The digests are
    stand-ins: a dry run pulls nothing (tests/test_registry.py pins real ones)."""
    path = str(tmp_path / "images.lock.yaml")
    with open(os.path.join(REPO, "containers", "images.lock.yaml")) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text)
    images = image_lock.read_images(path)
    stand_ins = {
        key: "sha256:%064x" % (i + 1)
        for i, key in enumerate(sorted(images))
        if not images[key].get("build")
    }
    image_lock.write_digests(path, stand_ins)
    return ["--config", 'containers={"lock": "%s", "strict_digests": true}' % path]


def snakemake(*args):
    return pipeline_helpers.snakemake(REPO, *args, timeout=300)


def cells_listed(output):
    return set(re.findall(r"wildcards: study=\w+, cell=(\S+)", output))


def test_strict_study_refuses_an_unpinned_image_in_one_line():
    res = snakemake("-n", "--configfile", "config/studies/paper.yaml")
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if "config error" in line]
    assert lines == [
        "config error: axes.torch: '2.0.1' (pytorch/pytorch:2.0.1-cuda11.8-cudnn8-runtime) has "
        "no digest in containers/images.lock.yaml and containers.strict_digests is true; "
        "pin it: python workflow/scripts/pin_images.py 2.0.1"
    ]
    assert "Traceback" not in res.stderr


def test_paper_dry_run_lists_every_cell_fast(pinned):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = snakemake("-n", "--configfile", "config/studies/paper.yaml", *pinned)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert res.returncode == 0, res.stderr
    cells = cells_listed(res.stdout)
    print("paper study: %d cells in the dry run, %.2f s (%.2f s CPU)" % (len(cells), elapsed, cpu))
    # 4 torch versions x 2 models x C10/C10+ x cuDNN on/off x 3 seeds.
    assert len(cells) == 96
    assert job_counts(res.stdout)["train_cell"] == 96
    assert job_counts(res.stdout)["check_gradients"] == 8
    # CPU time: wall time also counts whatever else shares the machine (other test runs).
    assert cpu < 5.0


def test_plain_snakemake_uses_the_default_profile():
    """`snakemake --cores all` alone gets keep-going, rerun-incomplete and the rerun triggers."""
    link = os.path.join(REPO, "profiles", "default")
    assert os.path.realpath(link) == os.path.join(REPO, "workflow", "profiles", "default")
    res = snakemake("-n", "--cores", "all")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "Using workflow specific profile profiles/default" in out
    # Its keys are the other profiles' keys too, so they merge without a conflict.
    default = read_profile("default")
    for other in ("gpu-host", "slurm"):
        prof = read_profile(other)
        assert all(prof.get(k, v) == v for k, v in default.items() if k != "cores"), other


def read_profile(name):
    with open(os.path.join(REPO, "workflow", "profiles", name, "config.yaml")) as f:
        return yaml.safe_load(f)


def test_slurm_profile_dry_run():
    res = snakemake(
        "-n", "--profile", "workflow/profiles/slurm", "--workflow-profile", "none",
        "--configfile", "config/studies/paper.yaml",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["train_cell"] == 96 and counts["build_runner_env"] == 4, counts
    train = res.stdout.split("rule train_cell:")[1].split("rule ")[0]
    # One GPU per SLURM job, the profile's partition placeholder, the paper protocol's time
    # limit before a prediction exists, the venv runner keeping SLURM's GPU.
    assert "gpu=1" in train and "runtime=2880" in train and "mem_mb=8000" in train
    assert "slurm_partition=YOUR_PARTITION" in train
    assert "--runner venv" in train and "--gpu inherit" in train


def test_gpu_host_profile_dry_run(pinned):
    res = snakemake(
        "-n",
        "--profile",
        "workflow/profiles/gpu-host",
        "--configfile",
        "config/studies/short.yaml",
        *pinned,
    )
    assert res.returncode == 0, res.stderr
    assert job_counts(res.stdout)["train_cell"] == 96


def test_missing_data_falls_back_to_synthetic_loudly(tmp_path):
    work = pipeline_helpers.checkout(tmp_path / "repo")
    nodata = 'data={"dir": "%s", "builder": null, "download": "off"}' % (tmp_path / "none")
    dry = pipeline_helpers.snakemake(work, "-n", "--config", nodata)
    assert dry.returncode == 0, dry.stderr
    assert "DATASET FALLBACK: CIFAR-10 not found under" in dry.stderr
    cells = cells_listed(dry.stdout)
    assert len(cells) == 2 and all(".synthetic." in c for c in cells)
    assert "prepare_data" not in job_counts(dry.stdout)
    res = pipeline_helpers.snakemake(
        work, "--cores", "1", "results/default/manifest.json", "--config", nodata
    )
    assert res.returncode == 0, res.stderr
    with open(os.path.join(work, "results/default/manifest.json")) as f:
        manifest = json.load(f)
    assert "no published comparison is possible" in manifest["dataset_fallback"]
    assert manifest["config"]["axes"]["dataset"] == ["cifar10"]  # what was asked for
    assert {c["params"]["dataset"] for c in manifest["cells"]} == {"synthetic"}


def job_blocks(output):
    """{rule: [the printed block of each of its jobs]} of a `snakemake -n -p` output."""
    blocks = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule )", output)[1:]:
        rule = re.search(r"^rule (\w+):", block, re.M).group(1)
        blocks.setdefault(rule, []).append(block)
    return blocks


def test_dry_run_prints_each_cells_train_command():
    """`snakemake -n -p` shows the command of every job that runs one, the train_cell command
    line built by workflow/scripts/commands.py (the one place a cell's flags come from)."""
    sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))
    import commands
    import data_plan
    import study

    env = dict(os.environ, DENSENET_NETWORK="no")  # the data plan as below: no network probe
    res = subprocess.run(
        pipeline_helpers.snakemake_argv("-n", "-p"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    blocks = job_blocks(res.stdout)
    # Rules with a command print it; `all` has none and write_manifest is a script: directive.
    for rule, jobs in blocks.items():
        if rule not in ("all", "write_manifest"):
            assert all("Shell command: None" not in job for job in jobs), rule

    with open(os.path.join(REPO, "config", "config.yaml")) as f:
        cfg = study.validate(yaml.safe_load(f), yaml.safe_load(open(SCHEMA)))
    _, effective, _ = data_plan.plan(cfg["data"], cfg["axes"]["dataset"], lambda: False)
    cells, _ = study.build_matrix(cfg, effective)
    assert len(blocks["train_cell"]) == len(cells) == 2
    options = commands.quote(commands.train_options(cfg))
    for cell in cells:
        job = [j for j in blocks["train_cell"] if "cell=%s\n" % cell["id"] in j]
        assert len(job) == 1, cell["id"]
        command = job[0].split("Shell command: ", 1)[1].splitlines()[0]
        train = commands.quote(commands.train_args(cfg, cell["params"]))
        assert " -- train %s %s > " % (train, options) in command, command
        assert (
            "run_cell.py --runner local --torch local --cell-dir results/default/cells/%s "
            % (cell["id"])
            in command
        )


# The lints that stay, and why. Every job's software is chosen per cell by the runner (this
# Python environment, or the pinned image of the cell's torch key), which a rule's conda: or
# container: directive cannot express. The constants a command uses (interpreter, script paths,
# the train options that change no result, the progress render) are not params, because a
# param is a rerun trigger: moving the checkout or switching checkpoint keeping must not
# retrain finished cells.
ALLOWED_LINTS = {"Specify a conda environment or container for each rule."} | {
    "Shell command directly uses variable %s from outside of the rule" % name
    for name in (
        "PYTHON",
        "RUN_CELL",
        "PREPARE_DATA",
        "PREDICT_COST",
        "PUBLISH_REPORT",
        "TRAIN_OPTIONS",
        "RENDER_PROGRESS",
    )
}


def test_lint_leaves_only_the_explained_lints():
    res = snakemake("--lint")
    out = res.stdout + res.stderr
    titles = set(re.findall(r"^ {4}\* (.+):$", out, re.M))
    # The lint ran, and its output is in the format read here (exit 1 when it lists any).
    assert ("Lints for" in out and titles) or "in a good condition" in out, out
    assert titles <= ALLOWED_LINTS, sorted(titles - ALLOWED_LINTS)


def test_snakefmt_clean():
    res = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
