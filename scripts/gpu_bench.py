"""The GPU measurements of docs/benchmarks/ in one go, on an H100/H200.

Runs, in this order (most wanted first: with GPU_BENCH_BUDGET_S set, a run that would pass
that many seconds from the start is cut short or skipped, and the table is still written),
with the machine's own python3/torch (no Docker there):
  1. build CIFAR-10 (cifar10-jpeg75) from the copied JPEG bundle (~20 s; needs numpy, Pillow)
  2. bench densenet-bc100-k12, batch 64: fp32 (TF32 off), cuDNN on -- eager vs CUDA graph
     (with --overlap's weight-gradient stream, and without it: "fast-serial"), efficient mode
     time and memory, the fast step fed by the training loop (index + augment) against
     prepared batches, data pipeline vs a torchvision DataLoader (all cores)
  3. the same with TF32 on (data pipeline shrunk: it does not change)
  4. train 4 epochs of 5,000 images with --fast off and on (the lr drops at epochs 3 and 4, the
     partial last batch is captured in epoch 4): per-epoch losses must agree to fp32 noise,
     and the host syncs per epoch (summary.json) show what the fast path saves
  5. bench with cuDNN off
  6. train 1 epoch with dropout (--augment off) and --efficient on: graph or loud fallback
  7. a cost probe, and its predicted epoch time against step 4's measured one
  8. bench with --deterministic on (fast must equal eager and fast-serial bitwise), the same
     pair in training, a second eager training (the yardstick of autotuned cuDNN's run-to-run
     noise), bench of densenet-bc190-k40 (efficient mode's memory)
  9. --compile on: bench (the compiled fast step against the plain one; gradients against
     float64), 4 training epochs against step 4's eager run, bench with TF32 on
and prints one table last. Every JSON and the table go to $OUT (the folder to copy back);
scratch files to $GPU_BENCH_WORK (default /tmp/gpu_bench_work). If CIFAR-10 cannot be built
(e.g. no Pillow there), every run uses synthetic data and the table says so.
GPU_BENCH_DRY=1 runs it all on the CPU at tiny sizes; tests/test_gpu_scripts.py does that in CI.

Usually run through scripts/gpu_all.sh, which adds the gradient checks and the explore leads
and packs the results into a few files. Copy the JPEG bundle next to the checkout first (its
default place is .device/):
    mkdir -p .device && cp -r ../shared/data/cifar10-jpeg75 .device/
then, on the GPU machine, within a 600 s limit:
    OUT=DIR scripts/gpu_all.sh .device/cifar10-jpeg75
On an H200 stages 1-8 took ~345 s, the data build included; the --compile stages take
~275 s (bench, cold compile cache) and ~100 s (training) more (docs/benchmarks/).
"""

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("OUT") or "/tmp/gpu_bench_out"
WORK = os.environ.get("GPU_BENCH_WORK") or "/tmp/gpu_bench_work"
PY = sys.executable
# GPU_BENCH_DRY=1: the same script on a CPU with tiny sizes, to check it before a GPU run.
DRY = os.environ.get("GPU_BENCH_DRY") == "1"
DEVICE = "cpu" if DRY else "cuda"
# The dry run's model: densenet-bc10-k12, one layer per dense block (every code path of the
# GPU run's models at a fraction of the CPU time and of inductor's compile time).
NAME = "densenet-bc10-k12" if DRY else "densenet-bc100-k12"
BIG = "densenet-bc10-k12" if DRY else "densenet-bc190-k40"
# The dry run benches batch 4, as gpu_check.sh's and gpu_explore.py's dry runs and the tests'
# TINY_BENCH do (a quarter of batch 64's CPU time; the compile stage then compiles the graph
# tests/test_compiled.py does, which inductor's on-disk cache may already hold).
BATCH = "4" if DRY else "64"
MODEL = ["--model", NAME, "--batch-size", BATCH, "--device", DEVICE]
# Training: the recipe's batch 64, 5000 images (78 full batches and a partial one). The dry run
# keeps that shape at a tenth of the CPU time: 40 images in batches of 16 (2 and a partial one).
N_TRAIN = 40 if DRY else 5000
TRAIN_BATCH = 16 if DRY else 64
# The probe predicts a training epoch: the training batch.
PROBE = ["--batch-size", str(TRAIN_BATCH), "--device", DEVICE]
TRAIN = [
    "--model",
    NAME,
    "--dataset",
    "cifar10",
    "--n-train",
    str(N_TRAIN),
    "--n-test",
    "16" if DRY else "1000",
    "--device",
    DEVICE,
    "--keep-checkpoint",
    "off",
] + (["--batch-size", str(TRAIN_BATCH)] if DRY else [])
LOG = []
STAGES = (  # most wanted first
    "fp32",
    "tf32",
    "train",
    "cudnn_off",
    "dropout",
    "probe",
    "deterministic",
    "train_det",
    "train_noise",
    "big",
    "compile",
    "train_compile",
    "compile_tf32",
)
BUDGET = float(os.environ.get("GPU_BENCH_BUDGET_S") or 1e9)
GRACE_S = 15.0  # between SIGTERM and SIGKILL for a run past its time
DEADLINE = time.time() + BUDGET


def run(args, timeout):
    """Run `python -m densenet ARGS` (or a script); keep going on failure, log the tail.

    Each run also stops at the script's deadline (GPU_BENCH_BUDGET_S after the start), so
    the table and log are always written within the budget; a run past it is skipped. A run
    past its time gets SIGTERM and GRACE_S seconds to write what it has (a bench writes
    bench_X.partial.json), then its whole process group (inductor's compile workers too) is
    killed."""
    t0 = time.time()
    cmd = [PY] + args
    timeout = min(timeout, DEADLINE - t0)
    if timeout < 5:
        LOG.append("$ %s\n[skipped: the %s s budget is spent]" % (" ".join(cmd), BUDGET))
        print("[%s] skipped (budget spent): %s" % (time.strftime("%H:%M:%S"), " ".join(args[:6])))
        return "skipped"
    grace = min(GRACE_S, timeout / 4.0)
    # Output to a file, not a pipe: a child that outlives the run (a compile worker) would hold
    # a pipe open, and reading it to its end would wait for that child.
    with tempfile.TemporaryFile("w+", errors="replace") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=timeout - grace)
            late = ""
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                rc = "timeout (stopped by SIGTERM, exit %s)" % proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                rc = "timeout (killed after %.0f s of grace)" % grace
            try:  # the run and whatever it left behind (e.g. inductor's compile workers)
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            late = "\n[ran past %.0f s]" % timeout
        log.seek(0)
        text = log.read() + late
    LOG.append("$ %s\n[rc %s, %.0f s]\n%s" % (" ".join(cmd), rc, time.time() - t0, text[-3000:]))
    print(
        "[%s] rc %s in %.0f s: %s"
        % (time.strftime("%H:%M:%S"), rc, time.time() - t0, " ".join(args[:6])),
        flush=True,
    )
    return rc


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def epochs(cell):
    try:
        with open(os.path.join(cell, "metrics.csv")) as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def wanted_stages():
    """GPU_BENCH_STAGES=a,b: only those stages (in the order of STAGES); default all."""
    wanted = os.environ.get("GPU_BENCH_STAGES")
    if not wanted:
        return list(STAGES)
    wanted = wanted.split(",")
    unknown = [w for w in wanted if w not in STAGES]
    if unknown:
        sys.exit("GPU_BENCH_STAGES: unknown %s; expected some of %s" % (unknown, ",".join(STAGES)))
    return [name for name in STAGES if name in wanted]


def main():
    wanted = wanted_stages()
    bundle = sys.argv[1] if len(sys.argv) > 1 else ".device/cifar10-jpeg75"
    os.makedirs(OUT, exist_ok=True)
    data = os.path.join(WORK, "data")
    run([os.path.join(bundle, "build.py"), data], 180)
    dataset = "cifar10"
    if not os.path.isfile(os.path.join(data, "cifar-10-batches-py", "test_batch")):
        # E.g. no Pillow on the GPU machine. Step times and the fast-vs-eager agreement do
        # not depend on the images: measure on generated ones rather than lose the run.
        dataset = "synthetic"
        print("CIFAR-10 could not be built (log.txt says why): every run uses synthetic data")
    src = ["--dataset", dataset, "--data-dir", data]
    train = [dataset if a == "cifar10" else a for a in TRAIN]
    full = ["--data-images", "20000", "--data-rounds", "3"]
    small = ["--data-images", "2048", "--data-rounds", "1"]
    runs = {
        "fp32": ["--tf32", "off", "--steps", "60"] + full,
        "tf32": ["--tf32", "on", "--steps", "60"] + small,
        "cudnn_off": ["--cudnn", "off", "--steps", "12", "--rounds", "3", "--feed", "off"] + small,
        # cuDNN's deterministic algorithms, no autotuning: fast must then equal eager bitwise.
        "deterministic": ["--deterministic", "on", "--steps", "20", "--profile", "off"] + small,
        # A large config, for efficient mode's memory saving and overhead.
        "big": ["--model", BIG, "--steps", "6", "--rounds", "2", "--warmup", "4"]
        + ["--profile", "off", "--feed", "off"]  # each runner holds ~21 GB: H100s have 80
        + small,
        # torch.compile'd fast step against the plain one, and its gradients against float64.
        "compile": ["--compile", "on", "--steps", "40", "--feed", "off"] + small,
        # No float64 gradient check: float64 never uses TF32, so the "compile" stage's check
        # covers this one; its two compiles are a large part of that stage's ~275 s (cold).
        "compile_tf32": ["--compile", "on", "--tf32", "on", "--steps", "40", "--profile", "off"]
        + ["--precision", "off", "--feed", "off"]
        + small,
    }
    if DRY:
        tiny = ["--steps", "2", "--rounds", "1", "--warmup", "1", "--threads", "1"]
        tiny += ["--data-images", "256", "--data-rounds", "1"]
        runs = {k: v + tiny for k, v in runs.items()}

    def bench(name, timeout=240):
        argv = ["-m", "densenet", "bench", "--out", "%s/bench_%s.json" % (OUT, name)]
        run(argv + MODEL + src + runs[name], timeout)  # a later --model overrides MODEL's

    def trainrun(name, epochs, extra, timeout=240):
        argv = ["-m", "densenet", "train", "--out", "%s/%s" % (WORK, name), "--epochs", epochs]
        run(argv + extra + ["--data-dir", data] + train, timeout)

    def probe():
        argv = ["-m", "densenet", "bench", "--probe", "--out", "%s/probe.json" % OUT]
        run(argv + ["--models", NAME] + PROBE + src + (["--steps", "1"] if DRY else []), 240)

    det = ["--deterministic", "on"]
    stages = {
        "fp32": lambda: bench("fp32"),
        "tf32": lambda: bench("tf32"),
        "train": lambda: [trainrun("train_" + f, "4", ["--fast", f]) for f in ("off", "on")],
        "cudnn_off": lambda: bench("cudnn_off"),
        "dropout": lambda: trainrun(
            "train_dropout", "1", ["--fast", "on", "--augment", "off", "--efficient", "on"], 120
        ),
        "probe": probe,
        "deterministic": lambda: bench("deterministic"),
        "train_det": lambda: [
            trainrun("train_det_" + f, "4", ["--fast", f] + det) for f in ("off", "on")
        ],
        # A second eager run: how far two runs of the same eager code drift apart under
        # cuDNN's autotuned (nondeterministic) algorithms, the yardstick for fast vs eager.
        "train_noise": lambda: trainrun("train_off2", "4", ["--fast", "off"]),
        "big": lambda: bench("big"),
        # Inductor compiles for minutes on a cold cache (71-129 s per setting on an H200).
        "compile": lambda: bench("compile", 420),
        # Compiles twice more (the partial batch, the kernel census's copy), then trains.
        "train_compile": lambda: trainrun(
            "train_compile", "4", ["--fast", "on", "--compile", "on"], 420
        ),
        "compile_tf32": lambda: bench("compile_tf32", 300),
    }
    # Most wanted first: a budget that runs out (GPU_BENCH_BUDGET_S) drops the tail of this
    # list. GPU_BENCH_STAGES=a,b runs only those (e.g. to redo a few in a second call).
    assert tuple(stages) == STAGES
    for name in wanted:
        stages[name]()
    check = dict(train_check(), dataset=dataset)
    with open(os.path.join(OUT, "train_check.json"), "w") as f:
        json.dump(check, f, indent=1)
    text = table(check)
    with open(os.path.join(OUT, "table.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(OUT, "log.txt"), "w") as f:
        f.write("\n\n".join(LOG))
    print(text)


def train_check():
    """Fast-vs-eager training agreement, the dropout run's step mode, probe vs measured."""
    off, on = epochs(WORK + "/train_off"), epochs(WORK + "/train_on")
    out = {
        "epochs": [
            [r.get("train_loss"), s.get("train_loss"), r.get("epoch_s"), s.get("epoch_s")]
            for r, s in zip(off, on)
        ]
    }
    out["max_abs_train_loss_diff"] = compare(off, on)["max_abs_train_loss_diff"]
    # The yardsticks: under deterministic cuDNN fast must equal eager exactly; with autotuned
    # (nondeterministic) algorithms, fast vs eager should drift no more than eager vs eager.
    det_off, det_on = epochs(WORK + "/train_det_off"), epochs(WORK + "/train_det_on")
    out["deterministic"] = compare(det_off, det_on)
    out["eager_vs_eager"] = compare(off, epochs(WORK + "/train_off2"))
    out["compiled_vs_eager"] = compare(off, epochs(WORK + "/train_compile"))
    out["compiled_epochs"] = [
        [r.get("train_loss"), r.get("epoch_s")] for r in epochs(WORK + "/train_compile")
    ]
    for name in (
        "train_off",
        "train_on",
        "train_dropout",
        "train_det_on",
        "train_off2",
        "train_compile",
    ):
        summ = load(os.path.join(WORK, name, "summary.json")) or {}
        out[name] = {
            k: summ.get(k)
            for k in (
                "status",
                "step_mode",
                "step_fallback",
                "final_test_err",
                "peak_mem_mb",
                "reason",
                "host_syncs_per_epoch",
                "weight_grad_stream",
                "conv_kernels",
            )
        }
    probe = load(os.path.join(OUT, "probe.json"))
    if probe and on:
        m = probe["models"][NAME]
        # One training epoch of step 4 (N_TRAIN images, TRAIN_BATCH each): steps + augmentation.
        steps = -(-N_TRAIN // TRAIN_BATCH)
        predicted = (steps * m["step_ms"]["sgd"] + N_TRAIN * probe["augment_ms_per_img"]) / 1e3
        measured = sorted(float(r["epoch_s"]) for r in on[1:])  # epoch 1 holds warmup/capture
        out["probe"] = {
            "predicted_epoch_s": predicted,
            "measured_epoch_s_median": measured[len(measured) // 2],
        }
    return out


def compare(a, b):
    """How far two trainings' per-epoch losses lie apart (None: a run is missing)."""
    if not a or len(a) != len(b):
        return {
            "epochs": 0,
            "max_abs_train_loss_diff": None,
            "max_abs_test_loss_diff": None,
            "losses_bitwise_equal": None,
        }
    cols = ("train_loss", "test_loss")
    return {
        "epochs": len(a),
        "max_abs_train_loss_diff": max(
            abs(float(r["train_loss"]) - float(q["train_loss"])) for r, q in zip(a, b)
        ),
        "max_abs_test_loss_diff": max(
            abs(float(r["test_loss"]) - float(q["test_loss"])) for r, q in zip(a, b)
        ),
        # The CSV holds repr(float): equal text is the same float64.
        "losses_bitwise_equal": all(r[c] == q[c] for r, q in zip(a, b) for c in cols),
    }


def feed_lines(f):
    """The bench's feed section: the fast step with the training loop's feeding (index +
    augment) in front of it against the step alone; the target is that feeding never shows."""
    if not f or "reason" in f:
        return []
    return [
        "  fast step ms alone %s, with the loop's feeding %s: feeding adds %+.1f%% "
        "(target: never visible); bitwise equal %s"
        % (
            fmt(f["step_ms"]["prepared"]),
            fmt(f["step_ms"]["fed"]),
            f["visible_pct"],
            f["agreement"]["bitwise_equal"],
        )
    ]


def overlap_lines(o):
    """The bench's --overlap section: the fast step with and without the weight-gradient stream."""
    if not o or "reason" in o:
        return []
    ag = o["agreement"]
    return [
        "  fast step ms without overlap %s, with %s: %s; after %d steps bitwise %s, max |diff| %.3g"
        % (
            fmt(o["step_ms"]["serial"]),
            fmt(o["step_ms"]["overlap"]),
            fmt(o["step_ms"]["serial"] / o["step_ms"]["overlap"], "x"),
            ag["steps"][0],
            ag["bitwise_equal"],
            ag["max_abs_state_diff"],
        )
    ]


def compile_lines(c):
    """The bench's --compile section in the table (densenet/bench/benchmark.py bench_compile)."""
    if not c:
        return []
    if "reason" in c:
        return ["  compiled step: not run (%s)" % c["reason"]]
    lines = [
        "  compiled step ms %s (%s) vs fast %s: %s; setup %.0f s; vs eager max |state diff| %.3g"
        % (
            fmt(c["step_ms"]["compiled"]),
            c["mode"]["mode"],
            fmt(c["step_ms"]["fast"]),
            fmt(c["step_ms"]["fast"] / c["step_ms"]["compiled"], "x"),
            c["setup_s"],
            c["agreement"]["max_abs_state_diff"],
        ),
        "  " + c["precision_summary"],
    ]
    top = c["profile"].get("top")
    if top:
        lines.append(
            "  top kernels, one compiled step: "
            + "; ".join("%s %.2f ms" % (r["name"][:60], r["self_ms"]) for r in top[:6])
        )
    return lines


def partial_lines(name, p):
    """A bench that was stopped (bench_X.partial.json): what it finished, and its step times if
    the timing rounds were among them."""
    if not p:
        return ["%-30s  (no result: see log.txt)" % name]
    stop = p["partial"]
    lines = [
        "%-30s  (stopped by %s after %.0f s; finished: %s)"
        % (name, stop["stopped_by"], stop["after_s"], ", ".join(stop["finished"]) or "nothing")
    ]
    steps = p.get("steps")
    if steps:
        lines.append(
            "  step ms: "
            + ", ".join("%s %s" % (k, fmt(v)) for k, v in sorted(steps["step_ms"].items()))
        )
    else:
        built = p.get("runners_built") or {}
        lines.append("  runners built (setup s): %s" % (built.get("setup_s") or "none"))
    lines.extend(compile_lines(p.get("compile")))
    return lines


def fmt(x, unit=""):
    return "-" if x is None else ("%.4g%s" % (x, unit))


def table(check):
    lines = []
    b = {
        n: load("%s/bench_%s.json" % (OUT, n))
        for n in ("fp32", "tf32", "cudnn_off", "deterministic", "big", "compile", "compile_tf32")
    }
    env = next((r["environ"] for r in b.values() if r), None)
    if env:
        lines.append(
            "card %s | torch %s | CUDA %s | cuDNN %s | driver %s | %s"
            % (
                (env["gpu"] or {}).get("name"),
                env["torch"],
                env["cuda"],
                env["cudnn"],
                (env["gpu"] or {}).get("driver"),
                time.strftime("%Y-%m-%d"),
            )
        )
    lines.append("data: %s" % check["dataset"])
    lines.append(
        "%-30s %12s %12s %8s   %s"
        % ("%s, batch %s" % (NAME, BATCH), "eager", "fast", "ratio", "target")
    )
    targets = {
        "fp32": "fast <= 10 ms",
        "tf32": "fast <= 6 ms",
        "cudnn_off": "-",
        "deterministic": "fast = eager bitwise",
        "big": BIG,
        "compile": "-",
        "compile_tf32": "-",
    }
    for name, res in b.items():
        if not res:
            lines.extend(partial_lines(name, load("%s/bench_%s.partial.json" % (OUT, name))))
            continue
        e, f = res["step_ms"]["eager"], res["step_ms"]["fast"]
        lines.append(
            "%-30s %12s %12s %8s   %s (%s)"
            % (
                "step ms, " + name,
                fmt(e),
                fmt(f),
                fmt(e / f if e and f else None, "x"),
                targets[name],
                res["steps"]["modes"]["fast"]["mode"],
            )
        )
        eff = res["efficient"]
        lines.append(
            "%-30s %12s %12s   memory MB normal %s efficient %s"
            % (
                "  efficient step ms",
                fmt(eff["step_ms"]["normal"]),
                fmt(eff["step_ms"]["efficient"]),
                fmt(eff["peak_mem_mb"]["normal"]),
                fmt(eff["peak_mem_mb"]["efficient"]),
            )
        )
        ag = res["steps"]["agreement"]
        lines.append(
            "  after %d steps, max |state diff|: fast vs eager %.3g (bitwise %s), "
            "efficient vs fast %.3g (bitwise %s)"
            % (
                ag["fast_vs_eager"]["steps"][0],
                ag["fast_vs_eager"]["max_abs_state_diff"],
                ag["fast_vs_eager"]["bitwise_equal"],
                ag["efficient_vs_fast"]["max_abs_state_diff"],
                ag["efficient_vs_fast"]["bitwise_equal"],
            )
        )
        lines.extend(feed_lines(res.get("feed")))
        lines.extend(overlap_lines(res.get("overlap")))
        lines.extend(compile_lines(res.get("compile")))
    if b["fp32"]:
        d = b["fp32"]["data_img_s"]
        lines.append(
            "data img/s ours %s | torchvision (%s workers) %s | target ours >= 1e5"
            % (
                fmt(d["ours"]),
                b["fp32"]["data"]["torchvision"]["num_workers"],
                fmt(d["torchvision"]),
            )
        )
        top = b["fp32"]["steps"]["profile"].get("top") or []
        lines.append(
            "top kernels (one eager fp32 step): "
            + "; ".join("%s %.2f ms" % (r["name"][:60], r["self_ms"]) for r in top[:5])
        )
    lines.append(
        "train 4 epochs, fast off vs on: max |train loss diff| %s; modes %s / %s"
        % (
            fmt(check.get("max_abs_train_loss_diff")),
            check["train_off"]["step_mode"],
            check["train_on"]["step_mode"],
        )
    )
    for key, label in (
        ("deterministic", "the same, --deterministic on"),
        ("eager_vs_eager", "eager vs a second eager run"),
    ):
        c = check[key]
        if c["epochs"]:
            lines.append(
                "%s: max |train loss diff| %s, |test loss diff| %s; losses bitwise equal %s"
                % (
                    label,
                    fmt(c["max_abs_train_loss_diff"]),
                    fmt(c["max_abs_test_loss_diff"]),
                    c["losses_bitwise_equal"],
                )
            )
    c = check["compiled_vs_eager"]
    if c["epochs"]:
        lines.append(
            "train 4 epochs, eager vs fast + compile: max |train loss diff| %s, |test loss diff| "
            "%s; mode %s; epoch s %s"
            % (
                fmt(c["max_abs_train_loss_diff"]),
                fmt(c["max_abs_test_loss_diff"]),
                check["train_compile"]["step_mode"],
                " / ".join(fmt(float(e[1])) for e in check["compiled_epochs"]),
            )
        )
    for name in ("train_on", "train_compile"):
        k = check[name].get("conv_kernels") or {}
        if k.get("kernels"):
            lines.append(
                "conv kernels, %s: " % name
                + "; ".join(
                    "%s x%d %.2f ms" % (r["name"][:50], r["count"], r["self_ms"])
                    for r in k["kernels"][:4]
                )
            )
    lines.append(
        "host syncs per epoch in the training loop: eager %s | fast %s"
        % (check["train_off"]["host_syncs_per_epoch"], check["train_on"]["host_syncs_per_epoch"])
    )
    lines.append(
        "dropout + efficient + fast: %s (%s), weight-gradient stream %s"
        % (
            check["train_dropout"]["step_mode"],
            check["train_dropout"]["step_fallback"],
            check["train_dropout"]["weight_grad_stream"],
        )
    )
    if "probe" in check:
        lines.append(
            "cost probe: predicted train epoch %.2f s, measured %.2f s"
            % (check["probe"]["predicted_epoch_s"], check["probe"]["measured_epoch_s_median"])
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
