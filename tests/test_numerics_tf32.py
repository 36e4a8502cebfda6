"""TF32 on must not crash the flag read-back (torch >= 2.9 raises in the legacy getter once the
per-backend fp32_precision API was used); runs in a subprocess: the flags are process-global."""

import json
import subprocess
import sys

from conftest import REPO

SCRIPT = """
import json
from densenet import numerics
on = numerics.configure(tf32="on")
off = numerics.configure(tf32="off")
print(json.dumps([on["tf32_effective"], off["tf32_effective"]]))
"""


def test_tf32_on_reads_back_without_error():
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [True, False]
