"""Two torch versions end to end in containers: a study whose `torch` axis names the offline
CPU images cpu-1.8.1 (Debian bullseye, python 3.9) and cpu-2.13.0 (bookworm, python 3.11),
clean and canary, two seeds, runs through `snakemake --cores all` with the docker runner: one
gradient stage per image and canary setting, the cells in their images, and a report whose
torch delta table and curves come from those cells. Each cell's env.json names its image by
tag and image ID. Needs both images (containers/cpu/build.sh, containers/cpu-1.8.1/build.sh;
CI: REQUIRE_VERSIONS=1 makes their absence a failure)."""

import html
import os
import re

import pytest
from conftest import TINY_MODEL, read_json
from helpers.dockerlib import LOCK, client_or_skip
from helpers.pipeline_helpers import checkout, snakemake

pytestmark = [pytest.mark.versions, pytest.mark.docker, pytest.mark.slow]

KEYS = {"cpu-1.8.1": "1.8.1", "cpu-2.13.0": "2.13.0"}  # lock key -> torch.__version__ prefix


@pytest.fixture(scope="module")
def images():
    import docker
    import image_lock

    client = client_or_skip()
    found = {}
    for key in KEYS:
        entry = image_lock.read_entry(LOCK, key)
        try:
            found[key] = dict(entry, id=client.images.get(entry["tag"]).id)
        except docker.errors.ImageNotFound:
            why = "image %s is not built (%s)" % (entry["tag"], entry["build"])
            if os.environ.get("REQUIRE_VERSIONS") == "1":
                pytest.fail("REQUIRE_VERSIONS=1 but " + why)
            pytest.skip(why + " (CI builds both and sets REQUIRE_VERSIONS=1)")
    return found


STUDY = [
    "runner=docker",
    "device=cpu",
    "gpu=none",
    (
        'axes={"model": ["%s"], "dataset": ["synthetic"], "augment": ["on"],'
        ' "optimizer": ["sgd"], "torch": ["cpu-1.8.1", "cpu-2.13.0"], "cudnn": ["on"],'
        ' "tf32": ["off"], "deterministic": ["off"], "canary": ["none", "noncontig-grad"],'
        ' "seed": [0, 1]}' % TINY_MODEL
    ),
    'train={"epochs": 1, "n_train": 64, "n_test": 32, "threads": 1}',
    'gradcheck={"batch_size": 2, "steps": 1}',
    'report={"progress": false, "predict_cost": false}',
]


def test_two_torch_images_train_and_compare_end_to_end(images, tmp_path):
    work = checkout(tmp_path / "repo")
    res = snakemake(work, "--cores", "all", "--config", *STUDY)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    manifest = read_json(os.path.join(work, "results/default/manifest.json"))
    assert len(manifest["cells"]) == 8 and len(manifest["envs"]) == 4

    for env in manifest["envs"]:
        key = env["params"]["torch"]
        check = read_json(os.path.join(work, env["dir"], "gradcheck.json"))
        assert check["environ"]["torch"].startswith(KEYS[key]), key
        canary = env["params"]["canary"] != "none"
        assert check["verdict"] == ("fail" if canary else "pass"), (key, check["verdict"])

    for cell in manifest["cells"]:
        key = cell["params"]["torch"]
        summary = read_json(os.path.join(work, cell["dir"], "summary.json"))
        assert summary["status"] == "completed", (cell["id"], summary.get("reason"))
        environ = read_json(os.path.join(work, cell["dir"], "env.json"))["environ"]
        assert environ["torch"].startswith(KEYS[key]), cell["id"]
        # Provenance: the image by tag and content-addressed ID (a local build).
        assert environ["image"]["tag"] == images[key]["tag"]
        assert environ["image"]["digest"] == images[key]["id"]

    with open(os.path.join(work, "results/default/report/report.html")) as f:
        page = f.read()
    table = re.search(
        r'<table class="deltas" data-axis="torch" data-base="cpu-1.8.1" '
        r'data-other="cpu-2.13.0">(.*?)</table>',
        page,
        re.S,
    )
    assert table, "no torch version delta table"
    rows = re.findall(
        r"<tr><td>(.*?)</td><td>(.*?)</td><td class=\"num\">(\d+)</td>", table.group(1)
    )
    assert [int(n) for _, _, n in rows] == [2], rows  # one group, both seeds paired
    curves = page.split('id="curves"')[1].split("</section>")[0]
    assert "<img" in curves  # one line per torch version in the group's figure
    for entry in images.values():
        assert html.escape(entry["tag"]) in page  # the environments table names each image
