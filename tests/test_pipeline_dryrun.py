"""The workflow as Snakemake sees it, without training: the paper study's full matrix in a dry
run under 5 s, the slurm profile's dry run, `snakemake --lint` and snakefmt clean."""

import os
import re
import subprocess
import sys
import time

from conftest import REPO


def snakemake(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "snakemake"] + list(args), cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def job_counts(output):
    """{'train_cell': 96, ...} from the 'Job stats' table of a (dry) run."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def cells_listed(output):
    return set(re.findall(r"wildcards: study=\w+, cell=(\S+)", output))


def test_paper_dry_run_lists_every_cell_fast():
    start = time.perf_counter()
    res = snakemake("-n", "--configfile", "config/studies/paper.yaml")
    elapsed = time.perf_counter() - start
    assert res.returncode == 0, res.stderr
    cells = cells_listed(res.stdout)
    print("paper study: %d cells in the dry run, %.2f s" % (len(cells), elapsed))
    # 4 torch versions x 2 models x C10/C10+ x cuDNN on/off x 3 seeds.
    assert len(cells) == 96
    assert job_counts(res.stdout)["train_cell"] == 96
    assert job_counts(res.stdout)["check_gradients"] == 8
    assert elapsed < 5.0


def test_slurm_profile_dry_run():
    res = snakemake("-n", "--profile", "workflow/profiles/slurm", "--configfile",
                    "config/studies/paper.yaml")
    assert res.returncode == 0, res.stderr
    assert job_counts(res.stdout)["train_cell"] == 96
    train = res.stdout.split("rule train_cell:")[1].split("rule ")[0]
    # One GPU per SLURM job; the partition and runtime of the profile reach the jobs.
    assert "gpu=1" in train and "runtime=2880" in train and "slurm_partition=gpu" in train


def test_gpu_host_profile_dry_run():
    res = snakemake("-n", "--profile", "workflow/profiles/gpu-host", "--configfile",
                    "config/studies/short.yaml")
    assert res.returncode == 0, res.stderr
    assert job_counts(res.stdout)["train_cell"] == 96


def test_lint_clean():
    res = snakemake("--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr


def test_snakefmt_clean():
    res = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile",
                          "workflow/rules"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
