"""containers/images.lock.yaml and the runner's image resolution, without a daemon: the real
lock file's keys, digest writes (comments kept, atomic, concurrent pins), strict mode, and that
a run only reads the lock. The registry side is a stand-in client here; tests/test_registry.py
runs the same paths against a real registry."""

import importlib
import multiprocessing
import os
import shutil

import pytest
import yaml
from helpers.dockerlib import LOCK

# workflow/scripts is not a package; dockerlib put it on sys.path.
commands = importlib.import_module("commands")
docker_runner = importlib.import_module("docker_runner")
image_lock = importlib.import_module("image_lock")

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
TAG = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"


@pytest.fixture
def lock(tmp_path):
    path = tmp_path / "images.lock.yaml"
    shutil.copy(LOCK, str(path))
    return str(path)


def test_lock_has_the_study_versions_and_no_invented_digests():
    images = image_lock.entries(open(LOCK).read())
    for key in ("2.0.1", "2.3.1", "2.5.1", "cpu-2.13.0"):
        assert key in images, key
    for key, entry in images.items():
        assert entry["tag"], key
        if entry.get("build") is None:
            assert entry["tag"].startswith("pytorch/pytorch:%s-" % key), key
        # A digest in the committed lock came from a pull, never from a hand: sha256 or null.
        assert entry["digest"] is None or image_lock.DIGEST.match(entry["digest"]), key
    assert images["cpu-2.13.0"]["digest"] is None  # local build: identity is the image ID


def test_write_digest_changes_only_that_line(lock):
    before = open(lock).read()
    assert image_lock.write_digest(lock, "2.5.1", DIGEST_A) is True
    after = open(lock).read()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines())
    assert changed == [("    digest: null", "    digest: " + DIGEST_A)]
    assert yaml.safe_load(after)["images"]["2.5.1"]["digest"] == DIGEST_A
    assert image_lock.write_digest(lock, "2.5.1", DIGEST_A) is False  # already there


def test_write_digest_refuses_a_different_pin_and_a_non_digest(lock):
    image_lock.write_digest(lock, "2.5.1", DIGEST_A)
    with pytest.raises(image_lock.LockError, match="already pins 2.5.1"):
        image_lock.write_digest(lock, "2.5.1", DIGEST_B)
    with pytest.raises(image_lock.LockError, match="not a sha256 content digest"):
        image_lock.write_digest(lock, "2.3.1", "latest")


def test_write_digest_adds_a_missing_digest_line(tmp_path):
    path = tmp_path / "lock.yaml"
    path.write_text("images:\n  '2.0.1':  # comment kept\n    tag: x/y:1\n  other:\n    tag: z:2\n")
    image_lock.write_digest(str(path), "2.0.1", DIGEST_A)
    text = path.read_text()
    assert "# comment kept" in text
    assert yaml.safe_load(text) == {
        "images": {"2.0.1": {"tag": "x/y:1", "digest": DIGEST_A}, "other": {"tag": "z:2"}}
    }


def pin(args):
    path, digest = args
    try:
        return image_lock.write_digest(path, "2.5.1", digest)
    except image_lock.LockError as exc:
        return str(exc)


def test_concurrent_pins_serialise(lock):
    # Eight jobs resolve the same tag at once: one writes, the others find it written.
    with multiprocessing.Pool(8) as pool:
        results = pool.map(pin, [(lock, DIGEST_A)] * 8)
    assert results.count(True) == 1 and results.count(False) == 7
    assert image_lock.read_entry(lock, "2.5.1")["digest"] == DIGEST_A
    assert not [f for f in os.listdir(os.path.dirname(lock)) if ".tmp." in f]


def test_read_entry_names_the_missing_key(lock):
    with pytest.raises(image_lock.LockError, match="no image for torch '9.9'.*keys: 2.0.1"):
        image_lock.read_entry(lock, "9.9")


class FakeImage(object):
    def __init__(self, image_id, repo_digests):
        self.id = image_id
        self.attrs = {"RepoDigests": repo_digests}


class FakeRegistryData(object):
    def __init__(self, digest):
        self.id = digest


class FakeImages(object):
    """The images API of a host without the image, whose pull yields `pulled` and whose
    registry says the tag points to `current`."""

    def __init__(self, pulled, current=None):
        self.pulled, self.pulls, self.current = pulled, [], current

    def get_registry_data(self, ref):
        import docker

        if self.current is None:
            raise docker.errors.APIError("registry unreachable")
        return FakeRegistryData(self.current)

    def get(self, ref):
        import docker

        raise docker.errors.ImageNotFound(ref)

    def pull(self, ref):
        self.pulls.append(ref)
        return self.pulled


class FakeClient(object):
    def __init__(self, pulled=None, current=None):
        self.images = FakeImages(pulled, current)


def entry(lock, key, strict=False):
    return dict(image_lock.read_entry(lock, key), lock=lock, strict=strict)


def read_only(path):
    """The lock made unwritable for the process (root ignores modes: patch the writers)."""
    os.chmod(path, 0o444)
    os.chmod(os.path.dirname(path), 0o555)


def test_unpinned_image_runs_by_the_current_digest_and_the_lock_is_only_read(lock, monkeypatch):
    before = open(lock).read()
    read_only(lock)

    def no_write(*args, **kwargs):
        raise AssertionError("a run wrote the lock")

    monkeypatch.setattr(image_lock, "write_digests", no_write)
    monkeypatch.setattr(image_lock.atomic, "write_text", no_write)
    client = FakeClient(FakeImage("sha256:" + "c" * 64, []), current=DIGEST_A)
    lines = []
    run_ref, record = docker_runner.resolve_image(client, entry(lock, "2.5.1"), lines.append)
    assert client.images.pulls == ["pytorch/pytorch@" + DIGEST_A]  # by digest, never by tag
    assert run_ref == "sha256:" + "c" * 64  # runs by ID: what was resolved is what runs
    assert record == "%s@%s" % (TAG, DIGEST_A)
    assert open(lock).read() == before
    assert any("not pinned" in line and "pin_images.py 2.5.1" in line for line in lines)
    os.chmod(os.path.dirname(lock), 0o755)


def test_pinned_image_is_pulled_by_digest_not_tag(lock):
    image_lock.write_digest(lock, "2.5.1", DIGEST_A)
    client = FakeClient(FakeImage("sha256:" + "c" * 64, ["pytorch/pytorch@" + DIGEST_A]))
    _, record = docker_runner.resolve_image(client, entry(lock, "2.5.1", strict=True), print)
    assert client.images.pulls == ["pytorch/pytorch@" + DIGEST_A]
    assert record == "%s@%s" % (TAG, DIGEST_A)


def test_strict_mode_refuses_before_pulling(lock):
    client = FakeClient()
    with pytest.raises(docker_runner.RunnerError, match="strict mode refuses") as caught:
        docker_runner.resolve_image(client, entry(lock, "2.5.1", strict=True), print)
    assert client.images.pulls == []
    assert "\n" not in str(caught.value)


class LocalOnlyImages(FakeImages):
    """A host that has the tag (loaded, never pulled) and no answering registry."""

    def get(self, ref):
        return self.pulled


def test_image_without_registry_digest_is_recorded_by_id_and_not_pinned(lock):
    client = FakeClient()
    client.images = LocalOnlyImages(FakeImage("sha256:" + "d" * 64, []))
    _, record = docker_runner.resolve_image(client, entry(lock, "2.5.1"), print)
    assert record == "%s@sha256:%s" % (TAG, "d" * 64)
    assert image_lock.read_entry(lock, "2.5.1")["digest"] is None


def test_unpinned_image_without_registry_or_local_copy_fails_in_one_line(lock):
    with pytest.raises(docker_runner.RunnerError, match="registry did not answer") as caught:
        docker_runner.resolve_image(FakeClient(), entry(lock, "2.5.1"), print)
    assert "\n" not in str(caught.value)


def test_write_digests_writes_once_or_not_at_all(lock):
    before = open(lock).read()
    with pytest.raises(image_lock.LockError, match="not a sha256"):
        image_lock.write_digests(lock, {"2.5.1": DIGEST_A, "2.3.1": "sha256:short"})
    with pytest.raises(image_lock.LockError, match="no entry 'nope'"):
        image_lock.write_digests(lock, {"2.5.1": DIGEST_A, "nope": DIGEST_B})
    assert open(lock).read() == before
    assert image_lock.write_digests(lock, {"2.5.1": DIGEST_A, "2.3.1": DIGEST_B}) == [
        "2.3.1",
        "2.5.1",
    ]
    with pytest.raises(image_lock.LockError, match="already pins 2.5.1"):
        image_lock.write_digests(lock, {"2.5.1": DIGEST_B})
    assert image_lock.write_digests(lock, {"2.5.1": DIGEST_B}, replace=True) == ["2.5.1"]
    assert image_lock.read_entry(lock, "2.5.1")["digest"] == DIGEST_B


@pytest.mark.parametrize(
    "tag, repo",
    [
        ("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "pytorch/pytorch"),
        ("registry.local:5000/team/torch:2.5.1", "registry.local:5000/team/torch"),
        ("registry.local:5000/team/torch", "registry.local:5000/team/torch"),
    ],
)
def test_repository_of_a_tag(tag, repo):
    assert docker_runner.repository(tag) == repo


def test_image_ref_is_added_once_and_only_where_densenet_takes_it():
    train = ["python", "-m", "densenet", "train", "--out", "/cell"]
    assert commands.with_image_ref(train, "t@d")[-2:] == ["--image-ref", "t@d"]
    assert commands.with_image_ref(train + ["--image-ref", "x"], "t@d").count("--image-ref") == 1
    assert "--image-ref" not in commands.with_image_ref(["python", "-m", "densenet", "env"], "t@d")
