"""`python -m report`: aggregate a study's cell directories and render its HTML report.

python -m report --manifest results/<study>/manifest.json --out results/<study>/report
python -m report --results DIR --out DIR      # ad hoc: every cell directory under DIR
python -m report ... --fail-on differs,not-reproduced   # a regression gate: exit 3

Exit codes: 0 written; 1 the study cannot be read; 2 bad arguments; 3 written, and a verdict
named by --fail-on occurs (comparisons.csv `verdict`; `provisional` matches any provisional
verdict).
"""

import argparse
import os
import sys
import time

import pandas as pd

from report import aggregate, references, render, study

EXIT_FAIL_ON = 3  # the report is written; a verdict named by --fail-on occurs in it
# What --fail-on may name: the verdicts, "not-compared", and "provisional" (any provisional).
FAIL_ON_NAMES = tuple(references.VERDICTS) + (references.NOT_COMPARED, "provisional")


class Parser(argparse.ArgumentParser):
    """Bad arguments are one line naming the argument, exit 2 (DESIGN.md), without the usage
    block argparse prints first."""

    def error(self, message):
        self.exit(2, "%s: error: %s\n" % (self.prog, message))


def out_problem(path):
    """None, or why --out cannot be the report's folder; checked before any cell is read."""
    if not path:
        return "expected a non-empty path"
    if os.path.exists(path) and not os.path.isdir(path):
        return "%r is a file, expected a directory" % path
    # makedirs would fail on the first ancestor that is a file, after all the work.
    above = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        return "%r lies under the file %s, expected a directory" % (path, above)
    return None


def source_problems(args):
    """(argument, problem) of each input path given that is not there: a typo must not
    render a valid-looking empty report."""
    if args.results is not None and not os.path.isdir(args.results):
        what = "is not a folder" if os.path.exists(args.results) else "does not exist"
        yield "--results", "%r %s (expected a folder of cell directories)" % (args.results, what)
    # Only the implicit default (beside the manifest) is optional; a path given is meant.
    if args.predicted is not None and not os.path.isfile(args.predicted):
        what = "is not a file" if os.path.exists(args.predicted) else "does not exist"
        yield "--predicted", "%r %s (expected a predicted_cost.json)" % (args.predicted, what)


def parse_args(argv):
    parser = Parser(
        prog="python -m report",
        description=__doc__.split("\n")[0],
        epilog="exit codes: 0 report written; 1 the study cannot be read; 2 bad arguments; "
        "%d report written and a --fail-on verdict occurs" % EXIT_FAIL_ON,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="results/<study>/manifest.json written by the workflow")
    source.add_argument(
        "--results",
        help="a folder to search for cell and gradcheck directories "
        "(no manifest: expected-but-missing cells are unknown)",
    )
    parser.add_argument("--out", required=True, help="folder for report.html and the CSV tables")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=references.DEFAULT_TOLERANCE,
        help="equivalence margin in error points for the published comparison "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--predicted",
        default=None,
        help="predicted cost JSON (default: predicted_cost.json beside the manifest, when present)",
    )
    parser.add_argument(
        "--fail-on",
        default="",
        metavar="VERDICTS",
        help="comma-separated verdicts (%s): after writing the report, exit %d when one "
        "occurs (comparisons.csv)" % (", ".join(FAIL_ON_NAMES), EXIT_FAIL_ON),
    )
    args = parser.parse_args(argv)
    args.fail_on = [name.strip() for name in args.fail_on.split(",") if name.strip()]
    unknown = [name for name in args.fail_on if name not in FAIL_ON_NAMES]
    if unknown:
        parser.error(
            "argument --fail-on: unknown verdict %s, expected some of %s"
            % (", ".join(map(repr, unknown)), ", ".join(FAIL_ON_NAMES))
        )
    if not args.tolerance > 0:
        parser.error("--tolerance: %r must be > 0 (error points)" % args.tolerance)
    problem = out_problem(args.out)
    if problem:
        parser.error("argument --out: " + problem)
    for name, problem in source_problems(args):
        parser.error("argument %s: %s" % (name, problem))
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    try:
        found = (
            study.from_manifest(args.manifest)
            if args.manifest
            else study.from_results(args.results)
        )
    except study.StudyError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 1
    if args.results is not None and not (found.cells or found.envs):
        sys.stderr.write(
            "error: --results %s holds no cell or gradcheck directories (none has %s)\n"
            % (args.results, ", ".join(study.CELL_MARKERS + ("gradcheck.json",)))
        )
        return 1
    tables = aggregate.aggregate(found)
    path = render.write_report(found, tables, args.out, args.tolerance, args.predicted)
    counts = tables.runs["status"].value_counts().to_dict()
    sys.stderr.write(
        "report: %d cells (%s), %d curve rows -> %s in %.1f s\n"
        % (
            len(tables.runs),
            ", ".join("%s %d" % kv for kv in sorted(counts.items())) or "none",
            len(tables.curves),
            path,
            time.perf_counter() - start,
        )
    )
    return gate(os.path.join(args.out, render.COMPARISONS_CSV), args.fail_on)


def gate(comparisons_csv, fail_on):
    """EXIT_FAIL_ON, with one line per verdict found, when a verdict named in fail_on
    occurs in the comparisons.csv just written; else 0."""
    if not fail_on:
        return 0
    table = pd.read_csv(comparisons_csv, dtype={"verdict": str})
    provisional = table["provisional"].astype(str).str.lower() == "true"
    found = {name: int((table["verdict"] == name).sum()) for name in fail_on}
    if "provisional" in fail_on:
        found["provisional"] = int(provisional.sum())
    found = {name: n for name, n in found.items() if n}
    if not found:
        return 0
    sys.stderr.write(
        "report: --fail-on: %s (%s)\n"
        % (", ".join("%d %s" % (n, name) for name, n in found.items()), comparisons_csv)
    )
    return EXIT_FAIL_ON
