"""Write results/<study>/manifest.json: rule write_manifest's `script:` (Snakemake runs it with
a `snakemake` object holding the rule's params, output and log).

The manifest text is the rule's param (workflow/rules/common.smk get_manifest), so a change of
the study's config rewrites it; the file is written atomically, since the report may be reading
the previous one.
"""

# No `from __future__ import annotations`: Snakemake's `script:` puts its preamble above the
# first line of this file, where a __future__ import is a SyntaxError (the hints are builtins).
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from densenet import atomic  # noqa: E402  (standard library only at import)


def write(text: str, out: str, log: str) -> None:
    """Write the manifest text to out and one line of counts to log."""
    atomic.write_text(out, text + "\n")
    manifest = json.loads(text)
    with open(log, "w") as f:
        counts = (len(manifest["cells"]), len(manifest["envs"]))
        print("manifest: %d cells, %d environments" % counts, file=f)


if __name__ == "__main__":
    job = globals()["snakemake"]  # injected by Snakemake's script directive
    write(job.params.manifest, job.output[0], job.log[0])
