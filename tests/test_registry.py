"""Pinning against a real registry: Debian's docker-registry on 127.0.0.1 (plain HTTP, which
dockerd allows for loopback registries), started per module and stopped by its PID.

The offline CPU image is pushed there, pinned by workflow/scripts/pin_images.py, removed from
the host, and pulled back by digest by a strict study, whose run leaves containers/ as it was.
A re-pushed tag is reported as moved and kept (replaced only with --update-moved); an
unreachable registry, an unknown tag and an unknown digest each give one line and leave the
lock untouched. Needs dockerd and docker-registry (CI: REQUIRE_REGISTRY=1 makes their absence
a failure)."""

import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import docker
import pytest
from conftest import read_json
from helpers.dockerlib import SCRIPTS, TINY, client_or_skip, cpu_image_or_skip, run_cell
from helpers.pipeline_helpers import checkout, snakemake

pytestmark = [pytest.mark.registry, pytest.mark.docker]

PIN = os.path.join(SCRIPTS, "pin_images.py")
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def unavailable(why):
    if os.environ.get("REQUIRE_REGISTRY") == "1":
        pytest.fail("REQUIRE_REGISTRY=1 but %s" % why)
    pytest.skip("%s (CI installs docker-registry and sets REQUIRE_REGISTRY=1)" % why)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """host:port of a registry that lives as long as this module's tests."""
    exe = shutil.which("docker-registry")
    if not exe:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    # No auth section: Debian's packaged config names an htpasswd file that does not exist.
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        "storage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\n"
        "http: {addr: 127.0.0.1:%d}\n" % (root / "data", port)
    )
    with open(str(root / "registry.log"), "w") as log:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while not answers("http://127.0.0.1:%d/v2/" % port):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(
                    "docker-registry did not answer: %s" % (root / "registry.log").read_text()
                )
            time.sleep(0.2)
        yield "127.0.0.1:%d" % port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client():
    return client_or_skip()


def push(client, image, repo, tag):
    """Tag `image` as repo:tag and push it; fails the test on a push error."""
    image.tag(repo, tag)
    for event in client.images.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in event, event
    return "%s:%s" % (repo, tag)


@pytest.fixture(scope="module")
def pushed(client, registry):
    """The offline CPU image as registry/densenet-cpu:2.13.0."""
    cpu = cpu_image_or_skip(client)
    yield push(client, client.images.get(cpu["tag"]), "%s/densenet-cpu" % registry, "2.13.0")
    # The host keeps no name of this registry: its port is gone with it.
    for image in client.images.list():
        for ref in image.tags:
            if ref.startswith(registry + "/"):
                client.images.remove(ref)


def write_lock(path, entries):
    lines = ["# registry images of the tests\n", "images:\n"]
    for key, (tag, digest) in entries.items():
        lines += ['  "%s":\n' % key, "    tag: %s\n" % tag, "    digest: %s\n" % (digest or "null")]
    with open(str(path), "w") as f:
        f.writelines(lines)
    return str(path)


def pin(lock, *args):
    res = subprocess.run(
        [sys.executable, PIN, "--lock", lock] + list(args), capture_output=True, text=True
    )
    return res.returncode, res.stdout.splitlines(), res.stderr


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tree_state(folder):
    """{relative path: (sha256, mtime)} of every file under folder."""
    state = {}
    for here, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(here, name)
            state[os.path.relpath(path, folder)] = (
                hashlib.sha256(read(path)).hexdigest(),
                os.stat(path).st_mtime_ns,
            )
    return state


def content_digest(registry, repo, tag):
    """Docker-Content-Digest of the tag's manifest, asked of the registry's HTTP API."""
    url = "http://%s/v2/%s/manifests/%s" % (registry, repo, tag)
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Docker-Content-Digest"]


def test_pinned_image_is_pulled_back_by_digest_by_a_strict_study(
    client, registry, pushed, tmp_path
):
    work = checkout(tmp_path / "repo")
    lock = write_lock(os.path.join(work, "containers", "images.lock.yaml"), {"reg": (pushed, None)})
    code, out, err = pin(lock)
    assert code == 0, (out, err)
    digest = read_json_yaml(lock)["reg"]["digest"]
    assert out == ["pinned   reg %s %s" % (pushed, digest)]
    repo = pushed.rsplit(":", 1)[0]
    # Three views of the same content digest: the daemon's, the SDK's and the registry's.
    assert "%s@%s" % (repo, digest) in client.images.get(pushed).attrs["RepoDigests"]
    assert client.images.get_registry_data(pushed).id == digest
    assert content_digest(registry, "densenet-cpu", "2.13.0") == digest
    before = read(lock)
    assert pin(lock)[:2] == (0, ["current  reg %s %s" % (pushed, digest)])
    assert read(lock) == before

    # Gone from the host under the registry's name: the study must pull it, by digest.
    client.images.remove(pushed)  # its digest reference goes with the last tag of the repo
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("%s@%s" % (repo, digest))
    containers_before = tree_state(os.path.join(work, "containers"))
    study = [
        "runner=docker",
        "device=cpu",
        "gpu=none",
        'containers={"lock": "containers/images.lock.yaml", "strict_digests": true}',
        'axes={"model": ["densenet-bc40-k12"], "dataset": ["synthetic"], "augment": ["on"],'
        ' "optimizer": ["sgd"], "torch": ["reg"], "cudnn": ["on"], "tf32": ["off"],'
        ' "deterministic": ["off"], "canary": ["none"], "seed": [0]}',
        'train={"epochs": 1, "n_train": 64, "n_test": 32, "threads": 1}',
        'gradcheck={"batch_size": 2, "steps": 1}',
        'report={"progress": false, "predict_cost": false}',
    ]
    res = snakemake(work, "--cores", "all", "--config", *study)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert tree_state(os.path.join(work, "containers")) == containers_before  # runs only read
    manifest = read_json(os.path.join(work, "results/default/manifest.json"))
    (cell,) = manifest["cells"]
    env = read_json(os.path.join(work, cell["dir"], "env.json"))
    assert env["environ"]["image"]["tag"] == pushed
    assert env["environ"]["image"]["digest"] == digest  # the registry digest, not an image ID
    logs = ""
    for here, _, files in os.walk(os.path.join(work, "results/default/logs")):
        logs += "".join(open(os.path.join(here, f)).read() for f in files)
    assert "pulling %s@%s" % (repo, digest) in logs


def read_json_yaml(lock):
    import yaml

    with open(lock) as f:
        return yaml.safe_load(f)["images"]


def test_moved_tag_is_reported_and_kept_unless_asked(client, registry, pushed, tmp_path):
    repo = "%s/densenet-moved" % registry

    built = []

    def labelled(value):
        dockerfile = "FROM %s\nLABEL org.densenet.test=%s\n" % (pushed, value)
        image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True)
        built.append(image.id)
        return push(client, image, repo, "1")

    tag = labelled("first")
    lock = write_lock(tmp_path / "lock.yaml", {"moved": (tag, None)})
    assert pin(lock)[0] == 0
    first = read_json_yaml(lock)["moved"]["digest"]
    labelled("second")  # the same tag, pushed again with other content
    second = client.images.get_registry_data(tag).id
    assert second != first
    before = read(lock)
    code, out, _ = pin(lock)
    assert code == 3
    assert out == [
        "moved    moved %s %s -> %s kept (--update-moved replaces it)" % (tag, first, second)
    ]
    assert read(lock) == before
    code, out, _ = pin(lock, "--update-moved")
    assert code == 0 and out == ["moved    moved %s %s -> %s updated" % (tag, first, second)]
    assert read_json_yaml(lock)["moved"]["digest"] == second
    for image_id in built:
        client.images.remove(image_id, force=True)


def test_unreachable_registry_and_unknown_tag_leave_the_lock_untouched(
    client, registry, pushed, tmp_path
):
    nobody = "127.0.0.1:%d/densenet-cpu:2.13.0" % free_port()
    unknown = "%s/densenet-nothere:1" % registry
    lock = write_lock(
        tmp_path / "lock.yaml",
        {"ok": (pushed, None), "gone": (nobody, None), "unknown": (unknown, None)},
    )
    before = read(lock)
    code, out, err = pin(lock)
    assert code == 1
    errors = [line for line in out if line.startswith("error")]
    assert [line.split()[1] for line in errors] == ["gone", "unknown"]
    assert any(line.startswith("pinned   ok ") for line in out)  # reported, not written
    assert "left unchanged" in err
    assert read(lock) == before


def test_unknown_digest_fails_the_cell_in_one_line(client, registry, pushed, tmp_path):
    repo = pushed.rsplit(":", 1)[0]
    missing = "sha256:" + "0" * 64
    lock = write_lock(tmp_path / "lock.yaml", {"reg": (pushed, missing)})
    before = read(lock)
    cell = str(tmp_path / "cell")
    code, out = run_cell(
        cell, ["train"] + TINY, key="reg", extra=["--lock", lock, "--strict-digests"]
    )
    assert code != 0, out
    reason = read_json(os.path.join(cell, "failure.json"))["reason"]
    assert "%s@%s" % (repo, missing) in reason and "\n" not in reason
    assert read(lock) == before
