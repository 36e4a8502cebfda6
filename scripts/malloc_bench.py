"""Train the same CPU cell under `--cpu-malloc system` and `reuse` (and, as a third variant,
system malloc with an evaluation batch of 500), alternating the variants run by run.

    python scripts/malloc_bench.py --out results/bench/cpu-malloc.json [--rounds 2]
        [--model densenet-bc40-k12] [--n-train 2000] [--n-test 1000] [--epochs 2]
        [--data-dir data --dataset cifar10] [--threads 2]

Each run is a fresh `python -m densenet train` process; the script reads that process's own
rusage (os.wait4: page faults, peak RSS, CPU time) and the cell's metrics.csv: training time
per epoch (epoch_s), evaluation time (summary wall_s minus the epochs' epoch_s) and the losses.
CPU only. The JSON holds every run; the table the medians per variant and whether the runs'
values are equal bit for bit: training losses and errors across all runs, test losses and
errors across the runs with the same evaluation batch (the variants change where freed memory
goes and how many test images go through the model at once; only the latter may move the last
bits of a test loss, whose per-batch sums then group differently).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = (
    ("system, eval 500", ["--cpu-malloc", "system", "--eval-batch-size", "500"]),
    ("system, eval 64", ["--cpu-malloc", "system"]),
    ("reuse, eval 64", ["--cpu-malloc", "reuse"]),
)
TRAIN_VALUES = ("train_loss", "train_err")
TEST_VALUES = ("test_loss", "test_err")


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def run_once(args, extra, out):
    cmd = [sys.executable, "-m", "densenet", "train", "--out", out, "--device", "cpu"]
    cmd += ["--model", args.model, "--dataset", args.dataset, "--protocol", "smoke"]
    cmd += ["--epochs", str(args.epochs), "--n-train", str(args.n_train)]
    cmd += ["--n-test", str(args.n_test), "--keep-checkpoint", "off"] + extra
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status:
        raise SystemExit("malloc_bench: %s exited with status %d" % (" ".join(cmd), status))
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "env.json")) as f:
        flags = json.load(f)["flags"]
    epoch_s = [float(r["epoch_s"]) for r in rows]
    return {
        "cpu_malloc": flags.get("cpu_malloc"),
        "eval_batch_size": summary["config"]["eval_batch_size"],
        "epoch_s": epoch_s,
        "eval_s": summary["wall_s"] - sum(epoch_s),
        "process_s": wall,
        "minor_faults": usage.ru_minflt,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "sys_s": usage.ru_stime,
        "train_values": [{k: r[k] for k in TRAIN_VALUES} for r in rows],
        "test_values": [{k: r[k] for k in TEST_VALUES} for r in rows],
    }


def same(runs, key):
    return "yes" if all(r[key] == runs[0][key] for r in runs) else "NO"


def table(runs):
    lines = [
        "| variant | runs | train s/epoch | eval s/epoch | process s | page faults | "
        "peak RSS MB | sys CPU s | training values | test values |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, _ in VARIANTS:
        mine = [r for r in runs if r["variant"] == name]
        evals = [r for r in runs if r["eval_batch_size"] == mine[0]["eval_batch_size"]]
        epochs = len(mine[0]["epoch_s"])
        lines.append(
            "| %s | %d | %.2f | %.2f | %.1f | %s | %.0f | %.1f | %s | %s |"
            % (
                name,
                len(mine),
                median([t for r in mine for t in r["epoch_s"]]),
                median([r["eval_s"] / epochs for r in mine]),
                median([r["process_s"] for r in mine]),
                "{:,}".format(int(median([r["minor_faults"] for r in mine]))),
                median([r["peak_rss_mb"] for r in mine]),
                median([r["sys_s"] for r in mine]),
                same(runs, "train_values") + " = every run's",
                same(evals, "test_values") + " = every eval-%d run's" % mine[0]["eval_batch_size"],
            )
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each variant")
    ap.add_argument("--model", default="densenet-bc40-k12")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            # Rotate the order each round, so a drifting machine load hits every variant.
            order = VARIANTS[rnd % len(VARIANTS) :] + VARIANTS[: rnd % len(VARIANTS)]
            for name, extra in order:
                out = os.path.join(tmp, "r%d-%d" % (rnd, VARIANTS.index((name, extra))))
                res = run_once(args, extra, out)
                res.update(variant=name, round=rnd)
                runs.append(res)
                print(
                    "%s round %d: epochs %s s, eval %.1f s, %d faults"
                    % (
                        name,
                        rnd,
                        ["%.1f" % t for t in res["epoch_s"]],
                        res["eval_s"],
                        res["minor_faults"],
                    ),
                    flush=True,
                )
    text = table(runs)
    print(text)
    tmp_out = args.out + ".tmp"
    with open(tmp_out, "w") as f:
        json.dump({"config": vars(args), "runs": runs, "table": text}, f, indent=1)
    os.replace(tmp_out, args.out)


if __name__ == "__main__":
    main()
