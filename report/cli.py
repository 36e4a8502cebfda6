"""`python -m report`: aggregate a study's cell directories and render its HTML report.

python -m report --manifest results/<study>/manifest.json --out results/<study>/report
python -m report --results DIR --out DIR      # ad hoc: every cell directory under DIR
"""

import argparse
import sys
import time

from report import aggregate, references, render, study


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m report", description=__doc__.split("\n")[0])
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
    args = parser.parse_args(argv)
    if not args.tolerance > 0:
        parser.error("--tolerance: %r must be > 0 (error points)" % args.tolerance)
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
    except study.ManifestError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 1
    tables = aggregate.aggregate(found)
    path = render.render_report(found, tables, args.out, args.tolerance, args.predicted)
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
    return 0
