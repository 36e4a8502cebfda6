"""A real single-node SLURM cluster (tests/helpers/slurm_cluster.py, the `slurm_cluster`
fixture): GPU requests are scheduled on its two fake GPUs, accounting (slurmdbd) records
jobs, their gres and their end state, and Snakemake runs a workflow through
snakemake-executor-plugin-slurm with the settings of SNAKEMAKE_PROFILE below.

Status queries: the plugin polls `sacct` whenever it is on PATH, and sacct reports a cancelled
job as "CANCELLED by <uid>", which the plugin does not count as failed: Snakemake would wait
forever for a job that `scancel` ended. `squeue --states=all` reports "CANCELLED", so the
profile sets `slurm-status-command: squeue`; the plugin still falls back to sacct when
MinJobAge (300 s here, SLURM's default) is below three times
slurm-init-seconds-before-status-checks. Ctrl-C (SIGINT) makes Snakemake cancel its jobs;
SIGTERM makes it wait until they end."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from conftest import default_sigint

pytestmark = pytest.mark.slurm

# The Snakemake settings that run jobs on this cluster (as a profile's config.yaml).
SNAKEMAKE_PROFILE = {
    "executor": "slurm",
    # Job states through squeue, not sacct (module docstring).
    "slurm-status-command": "squeue",
    # First status query after 2 s instead of 40 (then +10 s per query without news).
    "slurm-init-seconds-before-status-checks": 2,
    "latency-wait": 5,
    "default-resources": {
        "slurm_partition": "gpu",
        "slurm_account": "root",
        "runtime": 5,
        "mem_mb": 500,
    },
}

# Two jobs at once: one asks for a GPU through the `gpu` resource (the plugin's sbatch
# --gpus=1 and its job step's srun --gpus=1), one for none.
SNAKEFILE = """\
localrules:
    all,


rule all:
    input:
        "gpu.txt",
        "cpu.txt",


rule on_gpu:
    output:
        "gpu.txt",
    resources:
        gpu=1,
    shell:
        "echo $SLURM_JOB_ID ${{CUDA_VISIBLE_DEVICES:-none}} > {output}"


rule on_cpu:
    output:
        "cpu.txt",
    shell:
        "echo $SLURM_JOB_ID ${{CUDA_VISIBLE_DEVICES:-none}} > {output}"


rule slow:
    output:
        "slow.txt",
    resources:
        gpu=1,
    shell:
        "sleep 300 && touch {output}"
"""


@pytest.fixture
def slurm(slurm_cluster):
    """The session's cluster, with no job left pending or running after the test."""
    yield slurm_cluster
    slurm_cluster.cancel_all()


def script(body):
    return "#!/bin/sh\n" + textwrap.dedent(body)


def test_cluster_has_two_gpus_and_listens_on_loopback_only(slurm):
    assert slurm.timings["start"] < 60, slurm.timings
    out = slurm.run("sinfo", "-h", "-N", "-o", "%N %T %c %m %G").stdout.split()
    assert out == [slurm.node, "idle", str(slurm.cpus), str(slurm.real_memory), "gpu:2"]
    ports = {slurm.mysql_port, slurm.dbd_port, slurm.ctld_port, slurm.slurmd_port}
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    addr, port = local.rsplit(":", 1)
                    if state == "0A" and int(port, 16) in ports:  # LISTEN
                        listening.setdefault(int(port, 16), set()).add(addr)
    assert set(listening) == ports, (listening, ports)
    if not slurm.loopback_only:
        pytest.skip("host name %s does not resolve to 127.0.0.1" % slurm.node)
    assert all(addrs == {"0100007F"} for addrs in listening.values()), listening


def test_gpu_job_sees_its_gpu_and_accounting_records_the_gres(slurm, tmp_path):
    out = tmp_path / "job.out"
    jobid = slurm.sbatch(
        "--gpus=1",
        "-J",
        "gpu-job",
        "-o",
        str(out),
        script=script("""
        echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
        sleep 2
        """),
    )
    slurm.wait_state(jobid, {"RUNNING", "COMPLETED"})
    job = slurm.job(jobid)
    assert job.get("TresPerJob") == "gres:gpu:1", job
    assert "gres/gpu=1" in job["TRES"].split(","), job
    slurm.wait_state(jobid, {"COMPLETED"})
    assert re.fullmatch(r"CUDA_VISIBLE_DEVICES=[01]\n", out.read_text())
    row = slurm.wait_sacct(jobid, lambda r: r["State"] == "COMPLETED")
    assert "gres/gpu=1" in row["AllocTRES"].split(","), row


def test_two_gpu_jobs_run_at_once_on_different_gpus(slurm, tmp_path):
    # Each job waits (at most 30 s) until both have started: they pass only if they overlap.
    body = """
    echo "$CUDA_VISIBLE_DEVICES" > {dir}/$SLURM_JOB_ID.gpu
    for i in $(seq 300); do
        [ "$(ls {dir}/*.gpu | wc -l)" -ge 2 ] && exit 0
        sleep 0.1
    done
    exit 1
    """.format(dir=tmp_path)
    ids = [slurm.sbatch("--gpus=1", "-o", "/dev/null", script=script(body)) for _ in range(2)]
    for jobid in ids:
        slurm.wait_state(jobid, {"COMPLETED", "FAILED"}, timeout=40)
    rows = [slurm.wait_sacct(j, lambda r: r["State"] in ("COMPLETED", "FAILED")) for j in ids]
    assert [r["State"] for r in rows] == ["COMPLETED", "COMPLETED"], rows
    gpus = sorted((tmp_path / ("%s.gpu" % j)).read_text().strip() for j in ids)
    assert gpus == ["0", "1"]
    # Three GPUs do not exist on the node: refused at submission.
    res = slurm.run("sbatch", "--gpus=3", "-o", "/dev/null", input=script("true\n"), check=False)
    assert res.returncode != 0 and "not available" in res.stderr, res.stderr


def test_sacct_lists_finished_jobs_with_their_state(slurm):
    ok = slurm.sbatch("-J", "ok", "-o", "/dev/null", script=script("exit 0\n"))
    bad = slurm.sbatch("-J", "bad", "-o", "/dev/null", script=script("exit 3\n"))
    done = ("COMPLETED", "FAILED")
    # Accounting is asynchronous: a job's row can show its end before its name (seen once under
    # load: JobName "allocation" with the final state), so wait for the whole row.
    ok_row = slurm.wait_sacct(ok, lambda r: r["State"] in done and r["JobName"] == "ok")
    assert ok_row["State"] == "COMPLETED", ok_row
    row = slurm.wait_sacct(bad, lambda r: r["State"] in done and r["JobName"] == "bad")
    assert (row["JobName"], row["State"], row["ExitCode"]) == ("bad", "FAILED", "3:0"), row
    listed = slurm.run("sacct", "-X", "-n", "-P", "-o", "JobID,JobName,State").stdout
    assert "%s|ok|COMPLETED" % ok in listed.splitlines(), listed
    assert "%s|bad|FAILED" % bad in listed.splitlines(), listed


def test_scancel_of_a_running_job_is_cancelled_in_sacct(slurm):
    jobid = slurm.sbatch("--gpus=1", "-o", "/dev/null", script=script("sleep 300\n"))
    slurm.wait_state(jobid, {"RUNNING"})
    slurm.run("scancel", jobid)
    slurm.wait_state(jobid, {"CANCELLED"})
    row = slurm.wait_sacct(jobid, lambda r: r["State"].startswith("CANCELLED"))
    # sacct names who cancelled it ("CANCELLED by 0"): not a state snakemake's plugin knows.
    assert re.fullmatch(r"CANCELLED( by \d+)?", row["State"]), row


@contextlib.contextmanager
def snakemake(slurm, workdir, *targets):
    """Start `snakemake --executor slurm --jobs 2` with SNAKEMAKE_PROFILE on `targets` in
    `workdir`; yields the Popen (output merged into workdir/snakemake.out) and kills it at
    the end if still running."""
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    (workdir / "profile").mkdir()
    (workdir / "profile" / "config.yaml").write_text(yaml.safe_dump(SNAKEMAKE_PROFILE))
    argv = [sys.executable, "-m", "snakemake", "--executor", "slurm", "--jobs", "2"]
    argv += ["--profile", str(workdir / "profile"), "--workflow-profile", "none"]
    argv += ["--directory", str(workdir), "--snakefile", str(workdir / "Snakefile")]
    with open(workdir / "snakemake.out", "w") as log:
        proc = subprocess.Popen(
            argv + list(targets),
            env=slurm.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=default_sigint,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()  # snakemake may ignore SIGTERM while it waits for jobs
            proc.wait()


def run_id(workdir):
    """The SLURM run ID of a snakemake run: the name of all its SLURM jobs."""
    found = re.search(r"SLURM run ID: (\S+)", (workdir / "snakemake.out").read_text())
    assert found, (workdir / "snakemake.out").read_text()
    return found.group(1)


@pytest.mark.slow
def test_snakemake_runs_a_gpu_and_a_cpu_job_through_slurm(slurm, tmp_path):
    workdir = tmp_path / "wf"
    with snakemake(slurm, workdir) as proc:
        rc = proc.wait(timeout=120)
    log = (workdir / "snakemake.out").read_text()
    assert rc == 0, log
    gpu_job, gpu = (workdir / "gpu.txt").read_text().split()
    cpu_job, cpu = (workdir / "cpu.txt").read_text().split()
    assert gpu in ("0", "1") and cpu == "none", (gpu, cpu)
    rows = slurm.run(
        "sacct", "-X", "-n", "-P", "--name", run_id(workdir), "-o", "JobID,State,AllocTRES"
    ).stdout.splitlines()
    tres = {row.split("|")[0]: row.split("|")[1:] for row in rows}
    assert set(tres) == {gpu_job, cpu_job}, rows
    assert tres[gpu_job][0] == "COMPLETED" and "gres/gpu=1" in tres[gpu_job][1], rows
    assert tres[cpu_job][0] == "COMPLETED" and "gres/gpu" not in tres[cpu_job][1], rows


def running_job(slurm, proc, workdir, timeout=60):
    """The id of the one SLURM job of snakemake `proc`, once it runs."""
    deadline = time.monotonic() + timeout
    jobs = []
    while not jobs and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        jobs = slurm.run("squeue", "-h", "-t", "RUNNING", "-o", "%i").stdout.split()
    assert len(jobs) == 1, (workdir / "snakemake.out").read_text()
    return jobs[0]


@pytest.mark.slow
def test_snakemake_fails_soon_when_its_job_is_cancelled(slurm, tmp_path):
    workdir = tmp_path / "wf"
    with snakemake(slurm, workdir, "slow.txt") as proc:
        jobid = running_job(slurm, proc, workdir)
        slurm.run("scancel", jobid)
        # Status queries come 2, 12, 22, 32... s apart while nothing finishes.
        rc = proc.wait(timeout=90)
    log = (workdir / "snakemake.out").read_text()
    assert rc != 0, log
    assert "SLURM-job '%s' failed, SLURM status is: 'CANCELLED'" % jobid in log, log


@pytest.mark.slow
def test_interrupted_snakemake_cancels_its_jobs(slurm, tmp_path):
    """Ctrl-C (SIGINT) cancels the submitted jobs; SIGTERM would wait for them to end."""
    workdir = tmp_path / "wf"
    with snakemake(slurm, workdir, "slow.txt") as proc:
        jobid = running_job(slurm, proc, workdir)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    assert rc != 0, (workdir / "snakemake.out").read_text()
    assert slurm.wait_state(jobid, {"CANCELLED"}, timeout=10) == "CANCELLED"
