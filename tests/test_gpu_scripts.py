"""The one-call GPU scripts, run on the CPU in their dry modes, so that they keep working between
the runs on a GPU machine (a broken script would waste a whole bounded GPU run): scripts/gpu_all.sh
with GPU_BENCH_DRY=1 (gpu_bench.py, gpu_check.sh with DEVICE=cpu and gpu_explore.py), and the
budgets and selections that let a second, shorter call redo a few runs."""

import json
import os
import subprocess
import sys
import tarfile
import time

import pytest
from conftest import REPO

STAGES = 13  # scripts/gpu_bench.py STAGES; 15 densenet runs in all (train, train_det: 2 each)


def run_script(argv, env, timeout=900):
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def check_rows(table_text):
    return [line for line in table_text.splitlines() if "tf32-" in line]


@pytest.mark.slow
def test_gpu_all_dry_run_completes_every_stage_and_packs_its_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # BENCH_S: every stage must run here; the default (350 s) is the H200's, and on these CPUs
    # the compile stages alone take minutes.
    env = dict(os.environ, GPU_BENCH_DRY="1", OUT=str(out), PYTHON=sys.executable, BENCH_S="1500")
    # A bundle that is not there: the CIFAR-10 build fails and every run falls back to
    # synthetic data, as it would on a GPU machine without Pillow (and 20 s faster here).
    res = run_script(["scripts/gpu_all.sh", str(tmp_path / "no-bundle")], env, 1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # The bounded GPU run returns at most 8 files from $OUT, none deeper than 2 folders.
    names = sorted(os.listdir(out))
    assert names == sorted(
        ["gpu.tgz", "bench_table.txt", "check_table.txt", "explore.json", "gpu.txt"]
    )
    with tarfile.open(out / "gpu.tgz") as tar:
        tar.extractall(tmp_path / "all")
    got = tmp_path / "all"

    log = (got / "bench" / "log.txt").read_text()
    assert log.count("[rc 0,") == 15, log[-3000:]  # the build fails (no bundle) by design
    table = (out / "bench_table.txt").read_text()
    assert table == (got / "bench" / "table.txt").read_text()
    assert "data: synthetic" in table
    assert "train 4 epochs, fast off vs on: max |train loss diff| 0;" in table
    # On a CPU every pair is bitwise equal; on a GPU only the deterministic one must be.
    assert "the same, --deterministic on: max |train loss diff| 0," in table
    assert "eager vs a second eager run: max |train loss diff| 0," in table
    assert table.count("fast vs eager 0 (bitwise True), efficient vs fast 0 (bitwise True)") == 7
    assert table.count("compiled step ms") == 2  # fp32 and TF32 (a no-op on the CPU)
    # The fast step with the training loop's feeding, where the stage asks for it (not in big,
    # cudnn_off and the compile stages: memory and time go to what those stages measure).
    assert table.count("with the loop's feeding") == 3
    assert table.count("(target: never visible); bitwise equal True") == 3
    assert "train 4 epochs, eager vs fast + compile: max |train loss diff|" in table
    for name in ("fp32", "tf32", "cudnn_off", "deterministic", "big"):
        bench = json.loads((got / "bench" / ("bench_%s.json" % name)).read_text())
        assert bench["environ"]["torch"]
    check = json.loads((got / "bench" / "train_check.json").read_text())
    assert len(check["epochs"]) == 4 and check["dataset"] == "synthetic"
    assert check["deterministic"]["losses_bitwise_equal"] is True
    assert check["train_on"]["host_syncs_per_epoch"] == [None] * 4  # measured on CUDA only
    assert (got / "bench" / "probe.json").is_file()
    for cell in ("train_off", "train_on", "train_det_off", "train_det_on", "train_off2"):
        assert (got / "work" / cell / "metrics.csv").is_file(), cell
    assert not (got / "work" / "data").exists()  # the images are not packed

    rows = check_rows((out / "check_table.txt").read_text())
    assert len(rows) == 9, rows  # cuDNN on/off x TF32 off/on x clean/canary, + deterministic
    for row in rows:
        name, verdict = row.split()[:2]
        assert verdict == ("fail" if "noncontig-grad" in name else "pass"), row
        assert "unexpected: none" in row, row
    assert len(json.loads((got / "check" / "summary.json").read_text())) == 9

    explore = json.loads((out / "explore.json").read_text())
    assert len(explore["results"]) == 4
    assert all(r["step_ms"]["n"] == 2 for r in explore["results"]), explore


def test_spent_budgets_skip_runs_but_still_write_the_tables(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(
        os.environ,
        GPU_BENCH_DRY="1",
        OUT=str(out),
        GPU_BENCH_WORK=str(work),
        GPU_BENCH_BUDGET_S="0",
    )
    res = run_script([sys.executable, "scripts/gpu_bench.py", str(tmp_path)], env, 120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert log.count("[skipped: the 0.0 s budget is spent]") == 1 + 15, log
    assert (
        "fp32                            (no result: see log.txt)"
        in (out / "table.txt").read_text()
    )

    dest = tmp_path / "check"
    env = dict(os.environ, DEVICE="cpu", PYTHON=sys.executable, CHECK_BUDGET_S="0")
    res = run_script(["scripts/gpu_check.sh", str(dest)], env, 120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = check_rows((dest / "table.txt").read_text())
    assert len(rows) == 9 and all("NOT RUN" in r for r in rows), rows


@pytest.mark.slow
def test_selections_redo_only_the_runs_named(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, GPU_BENCH_DRY="1", OUT=str(out), GPU_BENCH_WORK=str(work))
    res = run_script(
        [sys.executable, "scripts/gpu_bench.py", str(tmp_path)],
        dict(env, GPU_BENCH_STAGES="probe,nonsense"),
        120,
    )
    assert res.returncode != 0 and "GPU_BENCH_STAGES: unknown ['nonsense']" in res.stderr
    assert not out.exists()  # refused before any run
    res = run_script(
        [sys.executable, "scripts/gpu_bench.py", str(tmp_path)],
        dict(env, GPU_BENCH_STAGES="probe"),
        300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert log.count("\n$ ") + log.startswith("$ ") == 2, log  # the build, then the probe
    assert "--probe" in log and (out / "probe.json").is_file()

    # Through gpu_all.sh, with the gradient checks and the explore leads left out (budget 0).
    out = tmp_path / "all"
    out.mkdir()
    res = run_script(
        ["scripts/gpu_all.sh", str(tmp_path / "no-bundle")],
        dict(
            env,
            OUT=str(out),
            PYTHON=sys.executable,
            GPU_BENCH_STAGES="probe",
            CHECK_S="0",
            EXPLORE_S="0",
        ),
        300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "== gradient check" not in res.stdout and "== explore" not in res.stdout
    assert sorted(os.listdir(out)) == ["bench_table.txt", "gpu.tgz", "gpu.txt"]

    dest = tmp_path / "check"
    env = dict(
        os.environ,
        DEVICE="cpu",
        PYTHON=sys.executable,
        BATCH_SIZE="4",
        STEPS="2",
        ONLY="deterministic",
    )
    res = run_script(["scripts/gpu_check.sh", str(dest)], env, 300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = check_rows((dest / "table.txt").read_text())
    assert [r.split()[:2] for r in rows] == [["cudnn-on.tf32-off.none.deterministic", "pass"]]


@pytest.mark.slow
def test_gpu_algos_dry_run_writes_both_limits(tmp_path):
    env = dict(os.environ, GPU_BENCH_DRY="1", OUT=str(tmp_path), PYTHON=sys.executable)
    res = run_script(["scripts/gpu_algos.sh"], env, 600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["explore-lim0.json", "explore-lim10.json", "gpu.txt"]
    for tag, limit, settings in (
        ("lim10", 10, ["fp32", "fp32+overlap", "tf32", "tf32+overlap"]),
        ("lim0", 0, ["fp32", "tf32", "fp32+overlap", "fp32+cl"]),
    ):
        got = json.loads((tmp_path / ("explore-%s.json" % tag)).read_text())
        assert got["limit"] == limit
        assert [r["setting"] for r in got["results"]] == settings
        for r in got["results"]:
            assert "error" not in r, r
            assert r["benchmark_limit"] == limit and r["step_ms"]["n"] == 2
            assert r["profile"]["top"], r  # which kernels (here: ops) ran
            assert r["weight_grad_stream"] is False  # no CUDA-graph step on the CPU


def test_gpu_explore_refuses_an_unknown_setting():
    res = run_script(
        [sys.executable, "scripts/gpu_explore.py", "--settings", "fp32,tf32+fast"], os.environ
    )
    assert res.returncode == 2
    assert "setting 'tf32+fast': expected fp32 or tf32, then any of +cl, +compile, +overlap" in (
        res.stderr
    )


def load_gpu_bench():
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        import gpu_bench
    finally:
        sys.path.pop(0)
    return gpu_bench


# A run that takes too long: it writes a file when told to stop (as the bench writes
# bench_X.partial.json), or ignores SIGTERM; its child sleeps on in the same process group.
SLOW = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1] + ".child", "w").write(str(child.pid))
def stop(signum, frame):
    open(sys.argv[1], "w").write("partial")
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop if sys.argv[2] == "obey" else signal.SIG_IGN)
print("started", flush=True)
time.sleep(600)
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:  # a zombie has exited
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("mode", ["obey", "ignore"])
def test_a_run_past_its_time_is_told_to_stop_then_killed_with_its_children(tmp_path, mode):
    gpu_bench = load_gpu_bench()
    script, marker = tmp_path / "slow.py", tmp_path / "partial.json"
    script.write_text(SLOW)
    t0 = time.time()
    rc = gpu_bench.run([str(script), str(marker), mode], 8)  # 2 s of grace (a quarter)
    assert time.time() - t0 < 20
    if mode == "obey":
        assert rc == "timeout (stopped by SIGTERM, exit 143)"
        assert marker.read_text() == "partial"
    else:
        assert rc == "timeout (killed after 2 s of grace)"
        assert not marker.exists()
    child = int((tmp_path / "partial.json.child").read_text())
    deadline = time.time() + 5
    while alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(child)
    assert "started" in gpu_bench.LOG[-1] and "[ran past 8 s]" in gpu_bench.LOG[-1]


def test_the_table_shows_a_stopped_bench_by_what_it_finished():
    gpu_bench = load_gpu_bench()
    stopped = {"stopped_by": "SIGTERM", "after_s": 162.0}
    steps = {"step_ms": {"eager": 40.2, "fast": 18.7, "compiled": 16.6}}
    lines = gpu_bench.partial_lines(
        "compile_tf32", dict(partial=dict(stopped, finished=["steps"]), steps=steps)
    )
    assert (
        lines[0].split() == "compile_tf32 (stopped by SIGTERM after 162 s; finished: steps)".split()
    )
    assert lines[1] == "  step ms: compiled 16.6, eager 40.2, fast 18.7"
    built = {"setup_s": {"eager": 0.3, "fast": 0.4}}
    lines = gpu_bench.partial_lines(
        "compile", dict(partial=dict(stopped, finished=[]), runners_built=built)
    )
    assert "finished: nothing" in lines[0]
    assert lines[1] == "  runners built (setup s): {'eager': 0.3, 'fast': 0.4}"
    assert gpu_bench.partial_lines("fp32", None) == [
        "fp32                            (no result: see log.txt)"
    ]
