"""The pipeline end to end on the local runner and the CPU, in a copy of the checkout: the
default study (tiny cells) trains and produces the report; one cell's rerun command reruns
exactly that training job and the report; a change of how jobs run (GPU policy, threads,
checkpoint keeping, overlap) retrains nothing; an interrupted study finishes on the next run
without retraining finished cells."""

import os
import shlex
import signal
import subprocess
import time

import pytest
from conftest import default_sigint, read_json
from helpers.pipeline_helpers import checkout, job_counts, snakemake, snakemake_argv

pytestmark = pytest.mark.slow

# Tiny overrides of the default study, as --config (nested values: Snakemake's own parsing).
TINY_TRAIN = 'train={"epochs": 1, "n_train": 200, "n_test": 100}'
TINY_GRADCHECK = 'gradcheck={"batch_size": 2, "steps": 1}'


def mtimes(paths):
    return {p: os.stat(p).st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def default_study(tmp_path_factory, cifar10_jpeg75):
    """The default study with tiny cells, run once; returns (workdir, manifest)."""
    work = checkout(tmp_path_factory.mktemp("pipeline") / "repo")
    data = 'data={"dir": "%s"}' % cifar10_jpeg75
    start = time.perf_counter()
    res = snakemake(work, "--cores", "all", "--config", data, TINY_TRAIN, TINY_GRADCHECK)
    print("default study (tiny cells): %.0f s" % (time.perf_counter() - start))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return work, read_json(os.path.join(work, "results/default/manifest.json"))


def test_default_study_end_to_end(default_study):
    work, manifest = default_study
    assert manifest["study"] == "default" and manifest["dataset_fallback"] is None
    assert len(manifest["config_hash"]) == 64
    canaries = sorted(c["params"]["canary"] for c in manifest["cells"])
    assert canaries == ["noncontig-grad", "none"]
    for cell in manifest["cells"]:
        summary = read_json(os.path.join(work, cell["dir"], "summary.json"))
        assert summary["status"] == "completed" and summary["epochs_done"] == 1
        assert summary["dataset_identity"] == "cifar10-jpeg75"
        env = read_json(os.path.join(work, cell["dir"], "env.json"))
        assert env["environ"]["git_sha"] == "test-sha"
        assert not os.path.exists(os.path.join(work, cell["dir"], "checkpoint.pt"))
    verdicts = {}
    for env in manifest["envs"]:
        verdicts[env["params"]["canary"]] = read_json(
            os.path.join(work, env["dir"], "gradcheck.json")
        )["verdict"]
    # The injected bug is flagged, the clean model passes, and neither blocked training.
    assert verdicts == {"none": "pass", "noncontig-grad": "fail"}
    assert (
        read_json(os.path.join(work, "results/default/data/cifar10.json"))["identity"]
        == "cifar10-jpeg75"
    )
    html = os.path.join(work, "results/default/report/report.html")
    assert os.path.getsize(html) > 10000
    with open(html) as f:
        text = f.read()
    assert all(cell["id"] in text for cell in manifest["cells"])


def test_snakemake_report_embeds_the_page(default_study):
    """`snakemake --report` packs the study's report (registered with htmlindex) into a zip."""
    import zipfile

    work, manifest = default_study
    data = 'data={"dir": "%s"}' % manifest["config"]["data"]["dir"]
    out = os.path.join(work, "snakemake-report.zip")
    res = snakemake(
        work, "--cores", "all", "--report", out, "--config", data, TINY_TRAIN, TINY_GRADCHECK
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("/report.html") and "/data/raw/" in n for n in names), names
    assert any(n.endswith("/runs.csv") for n in names), names


def test_second_run_has_nothing_to_do(default_study):
    work, manifest = default_study
    data = 'data={"dir": "%s"}' % manifest["config"]["data"]["dir"]
    res = snakemake(work, "-n", "--config", data, TINY_TRAIN, TINY_GRADCHECK)
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_render_report_target_rerenders_without_training(default_study):
    work, manifest = default_study
    html = os.path.join(work, "results/default/report/report.html")
    before = os.stat(html).st_mtime_ns
    data = 'data={"dir": "%s"}' % manifest["config"]["data"]["dir"]
    res = snakemake(
        work, "--cores", "1", "render_report", "--config", data, TINY_TRAIN, TINY_GRADCHECK
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout + res.stderr) == {"render_report": 1}
    assert os.stat(html).st_mtime_ns > before


def test_how_jobs_run_never_retrains_a_finished_cell(default_study):
    """The runner's GPU policy and threads, checkpoint keeping, the overlap and the progress
    render change how jobs run, not what they compute: no cell, gradient check or probe
    reruns (the manifest records the new config, and the report follows it)."""
    work, manifest = default_study
    data = 'data={"dir": "%s"}' % manifest["config"]["data"]["dir"]
    train = (
        'train={"epochs": 1, "n_train": 200, "n_test": 100, "threads": 1, "overlap": "off",'
        ' "keep_checkpoint": "on"}'
    )
    progress = 'report={"progress": false, "predict_cost": true}'
    res = snakemake(work, "-n", "--config", data, train, TINY_GRADCHECK, "gpu=none", progress)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = job_counts(res.stdout)
    assert counts.get("write_manifest") == 1, res.stdout  # the config did change
    for rule in ("train_cell", "check_gradients", "probe_cost", "prepare_data"):
        assert rule not in counts, res.stdout


def test_rerun_one_cell_reruns_that_job_and_the_report(default_study):
    work, manifest = default_study
    cell, other = manifest["cells"]
    summary = os.path.join(cell["dir"], "summary.json")
    rerun = shlex.split(cell["rerun"])
    assert rerun[:5] == ["snakemake", "--cores", "all", summary, "-f"]

    # What the forced cell drags along: its training job and the report, nothing else.
    dry = snakemake(work, "-n", "--forcerun", summary, *rerun[5:])
    assert job_counts(dry.stdout) == {"train_cell": 1, "render_final_report": 1, "all": 1}, (
        dry.stdout
    )
    assert "cell=%s" % cell["id"] in dry.stdout and "cell=%s" % other["id"] not in dry.stdout

    untouched = [os.path.join(work, other["dir"], "summary.json")] + [
        os.path.join(work, e["dir"], "gradcheck.json") for e in manifest["envs"]
    ]
    before = mtimes(untouched)
    report = os.path.join(work, "results/default/report/report.html")
    report_before = os.stat(report).st_mtime_ns
    summary_before = os.stat(os.path.join(work, summary)).st_mtime_ns

    res = snakemake(work, *rerun[1:])  # the manifest's command, as a user would paste it
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout + res.stderr) == {"train_cell": 1}
    assert os.stat(os.path.join(work, summary)).st_mtime_ns > summary_before
    assert mtimes(untouched) == before
    # The re-render after the cell refreshed the report.
    assert os.stat(report).st_mtime_ns > report_before


def interrupt_study(tmp_path, signum):
    """Start a 3-cell synthetic study, interrupt it once one cell has finished and the next
    one is training, run it again; return what is needed to judge the two runs."""
    work = checkout(tmp_path / "repo")
    config = [
        'axes={"dataset": ["synthetic"], "canary": ["none"], "seed": [0, 1, 2]}',
        'train={"epochs": 2, "n_train": 128, "n_test": 64}',
        TINY_GRADCHECK,
        # No cost probe (30 s of CPU; the default study above runs it): the cells start sooner.
        'report={"predict_cost": false}',
    ]
    args = ["--cores", "all", "--config"] + config
    cells = os.path.join(work, "results/default/cells")
    proc = subprocess.Popen(
        snakemake_argv(*args),
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    deadline = time.time() + 600
    done = []
    while time.time() < deadline and proc.poll() is None:
        ids = os.listdir(cells) if os.path.isdir(cells) else []
        done = [c for c in ids if os.path.exists(os.path.join(cells, c, "summary.json"))]
        running = [
            c
            for c in ids
            if c not in done and os.path.exists(os.path.join(cells, c, "metrics.csv"))
        ]
        if done and running:
            break
        time.sleep(0.2)
    assert done and proc.poll() is None, "the study ended before it could be interrupted"
    # Ctrl-C reaches the whole foreground process group; SIGTERM only Snakemake itself.
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    first_log = proc.communicate(timeout=600)[0]
    finished = [
        c for c in os.listdir(cells) if os.path.exists(os.path.join(cells, c, "summary.json"))
    ]
    stamps = mtimes(os.path.join(cells, c, "summary.json") for c in finished)
    second = snakemake(work, *args)
    return proc.returncode, first_log, finished, stamps, second, cells


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_study_resumes_without_retraining(tmp_path, signum):
    code, first_log, finished, stamps, second, cells = interrupt_study(tmp_path, signum)
    assert code != 0 or len(finished) < 3, first_log[-2000:]
    assert 1 <= len(finished) < 3
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # Finished cells were not trained again: same summary files, and only the others ran.
    assert mtimes(stamps) == stamps
    assert job_counts(second.stdout + second.stderr).get("train_cell") == 3 - len(finished)
    for cell in os.listdir(cells):
        assert read_json(os.path.join(cells, cell, "summary.json"))["status"] == "completed"
