"""The runners and SIGINT/SIGTERM, without Docker: an interrupted container job is removed and
ends as an interruption (KeyboardInterrupt, exit 130: no failure.json), never as a failure; a
signal the caller ignores (shells start background jobs with SIGINT ignored) stays ignored."""

import importlib
import os
import signal
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))
docker_runner = importlib.import_module("docker_runner")
job_signals = importlib.import_module("job_signals")


class FakeApi(object):
    def __init__(self):
        self.removed = []

    def remove_container(self, name, force=False):
        self.removed.append((name, force))


class FakeContainers(object):
    def run(self, **settings):
        return "container %s" % settings["name"]


class FakeClient(object):
    def __init__(self):
        self.api, self.containers = FakeApi(), FakeContainers()


@pytest.fixture
def sigint(request):
    """Set SIGINT's handler for one test (param: the handler), restore it afterwards."""
    old = signal.signal(signal.SIGINT, request.param)
    yield request.param
    signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("sigint", [signal.default_int_handler], indirect=True)
def test_sigint_during_a_container_removes_it_and_is_an_interruption(sigint):
    client = FakeClient()
    with pytest.raises(KeyboardInterrupt):
        with docker_runner.started(client, {"name": "job-1"}) as container:
            assert container == "container job-1"
            assert signal.getsignal(signal.SIGINT) is not sigint  # the runner's own handler
            signal.raise_signal(signal.SIGINT)
            pytest.fail("the signal did not interrupt the job")
    assert client.api.removed == [("job-1", True)]
    assert signal.getsignal(signal.SIGINT) is sigint


@pytest.mark.parametrize("sigint", [signal.SIG_IGN], indirect=True)
def test_an_ignored_sigint_stays_ignored(sigint):
    client = FakeClient()
    with docker_runner.started(client, {"name": "job-2"}):
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)  # ignored: the job goes on
    assert client.api.removed == [("job-2", True)]  # removed at its normal end
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.parametrize("sigint", [signal.SIG_IGN], indirect=True)
def test_catch_signals_leaves_ignored_ones_and_restores_the_rest(sigint):
    def handler(signum, frame):
        pass

    term = signal.getsignal(signal.SIGTERM)
    old = job_signals.catch_signals(handler)
    try:
        assert set(old) == {signal.SIGTERM}
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        job_signals.restore_signals(old)
    assert signal.getsignal(signal.SIGTERM) is term
