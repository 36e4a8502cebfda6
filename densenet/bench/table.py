"""The readable table `python -m densenet bench` prints after a run (benchmark.py): one row
per ratio, both sides and a/b, then the agreement and precision lines of each section.
scripts/gpu_bench.py formats its own multi-stage table from the same JSON."""

from typing import Any, Mapping, Optional

__all__ = ["table"]


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def table(res: Mapping[str, Any]) -> str:
    """The readable summary printed after a run."""
    s, d, e = res["steps"], res["data"], res["efficient"]
    gpu = (res["environ"].get("gpu") or {}).get("name")
    lines = [
        "bench: %s, batch %d, %s, torch %s%s"
        % (
            res["config"]["model"],
            res["config"]["batch_size"],
            res["config"]["device"],
            res["environ"]["torch"],
            (", " + gpu) if gpu else "",
        )
    ]
    fmt = "%-34s %14s %14s %8s"
    lines.append(fmt % ("", "a", "b", "a/b"))

    def row(label, a, b, unit):
        r = ratio(a, b)
        lines.append(
            fmt
            % (
                label,
                "-" if a is None else "%.4g %s" % (a, unit),
                "-" if b is None else "%.4g %s" % (b, unit),
                "-" if r is None else "%.2fx" % r,
            )
        )

    row(
        "step: eager / fast (%s)" % s["modes"]["fast"]["mode"],
        res["step_ms"]["eager"],
        res["step_ms"]["fast"],
        "ms",
    )
    row("step: efficient / normal", e["step_ms"]["efficient"], e["step_ms"]["normal"], "ms")
    row(
        "peak memory: normal / efficient",
        e["peak_mem_mb"]["normal"],
        e["peak_mem_mb"]["efficient"],
        "MB",
    )
    row("data: ours / torchvision", d["ours"]["img_s"], d["torchvision"]["img_s"], "img/s")
    if d["torchvision"]["reason"]:
        lines.append("  torchvision baseline: %s" % d["torchvision"]["reason"])
    ag = s["agreement"]["fast_vs_eager"]
    lines.append(
        "fast vs eager after %d steps: bitwise equal %s, max |diff| %.3g"
        % (ag["steps"][0], ag["bitwise_equal"], ag["max_abs_state_diff"])
    )
    lines.extend(feed_lines(res.get("feed"), row))
    lines.extend(overlap_lines(res.get("overlap"), row))
    lines.extend(compile_lines(res.get("compile"), row))
    for name, rec in s["modes"].items():
        if rec["fallback"] or rec["why_not_graph"]:
            lines.append(
                "  %s runner: %s (%s)"
                % (name, rec["mode"], rec["fallback"] or rec["why_not_graph"])
            )
    return "\n".join(lines)


def feed_lines(f, row):
    """The fast step fed by the training loop against prepared batches (none without it)."""
    if not f or "reason" in f:
        return []
    row("step: fed / prepared batches", f["step_ms"]["fed"], f["step_ms"]["prepared"], "ms")
    ag = f["agreement"]
    return [
        "feeding (index + augment, feed.py) adds %+.1f%% to the fast step; fed vs fast after "
        "%d steps: bitwise equal %s" % (f["visible_pct"], ag["steps"][0], ag["bitwise_equal"])
    ]


def overlap_lines(o, row):
    """The --overlap rows of the table (none where it does not apply)."""
    if not o or "reason" in o:
        return []
    row("step: serial / overlap", o["step_ms"]["serial"], o["step_ms"]["overlap"], "ms")
    ag = o["agreement"]
    return [
        "overlap vs serial after %d steps: bitwise equal %s, max |diff| %.3g"
        % (ag["steps"][0], ag["bitwise_equal"], ag["max_abs_state_diff"])
    ]


def compile_lines(c, row):
    """The --compile rows of the table (none without --compile on)."""
    if c is None:
        return []
    if "reason" in c:
        return ["compiled step: not run (%s)" % c["reason"]]
    row(
        "step: fast / compiled (%s)" % c["mode"]["mode"],
        c["step_ms"]["fast"],
        c["step_ms"]["compiled"],
        "ms",
    )
    return [
        "compiled: setup %.1f s (compile + warmup), vs eager after %d steps max |diff| %.3g"
        % (c["setup_s"], c["agreement"]["steps"][0], c["agreement"]["max_abs_state_diff"]),
        c["precision_summary"],
    ]
