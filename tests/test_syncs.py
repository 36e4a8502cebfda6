"""The host-sync counter (densenet/syncs.py): counts torch's sync warnings inside a block and
passes every other warning on. torch's switch needs a CUDA device, so a stand-in switch emits
the warning here the way torch's C++ side would; on a GPU, scripts/gpu_bench.py reads the real
counts from the training cells' summary.json."""

import warnings

import pytest
import torch

from densenet.syncs import SYNC_MESSAGE, HostSyncCounter


class Switch(object):
    def __init__(self):
        self.modes = []

    def __call__(self, mode):
        self.modes.append(mode)

    def sync(self):  # what torch does on .item() while the mode is "warn"
        if self.modes and self.modes[-1] == "warn":
            warnings.warn(SYNC_MESSAGE, stacklevel=2)


def test_counts_each_sync_and_restores_the_mode():
    switch = Switch()
    with HostSyncCounter(torch.device("cuda"), set_mode=switch) as c:
        for _ in range(3):  # the same line three times: must not be deduplicated
            switch.sync()
    assert c.count == 3
    assert switch.modes == ["warn", "default"]
    switch.sync()  # after the block: the mode is off again
    with HostSyncCounter(torch.device("cuda"), set_mode=switch) as c:
        pass
    assert c.count == 0


def test_other_warnings_are_passed_on():
    switch = Switch()
    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        with HostSyncCounter(torch.device("cuda"), set_mode=switch) as c:
            switch.sync()
            warnings.warn("something else", DeprecationWarning, stacklevel=2)
    assert c.count == 1
    assert [(str(w.message), w.category) for w in outer] == [("something else", DeprecationWarning)]


def test_not_measured_on_cpu_is_none_not_zero():
    with HostSyncCounter(torch.device("cpu")) as c:
        torch.ones(3).sum().item()
    assert c.count is None


def test_an_exception_in_the_block_still_restores_the_mode():
    switch = Switch()
    with pytest.raises(ValueError):
        with HostSyncCounter(torch.device("cuda"), set_mode=switch):
            raise ValueError("boom")
    assert switch.modes == ["warn", "default"]
