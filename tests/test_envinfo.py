"""GPU preflight logic: does an image's torch carry kernels for the card? (No GPU needed: the
CUDA queries are replaced by what real builds and cards report.)"""

import pytest
import torch

from densenet import envinfo

# torch.cuda.get_arch_list() of real builds.
TORCH_113_CU117 = ["sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86"]
TORCH_201_CU118 = TORCH_113_CU117 + ["sm_90"]


@pytest.mark.parametrize(
    "arch, capability, supported",
    [
        (TORCH_113_CU117, (9, 0), False),  # torch 1.13 on an H100: the paper study's skip
        (TORCH_201_CU118, (9, 0), True),
        (TORCH_113_CU117, (8, 9), True),  # sm_86 machine code runs on an sm_89 card
        (["sm_75", "sm_80"], (8, 6), True),
        (["sm_60", "sm_70"], (8, 0), False),  # other major version
        (["sm_80", "compute_80"], (9, 0), True),  # PTX JIT-compiles for newer cards
        ([], (9, 0), True),  # no list to judge by
    ],
)
def test_cuda_arch_support(monkeypatch, arch, capability, supported):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch))
    result = envinfo.cuda_arch_support()
    assert result["supported"] is supported
    assert (result["reason"] is None) is supported
    if not supported:
        assert "sm_%d%d" % capability in result["reason"]


def test_no_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert envinfo.cuda_arch_support() == {"supported": False, "reason": "no CUDA device visible"}


def test_image_ref_parsing():
    ref = envinfo.parse_image_ref("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime@sha256:abc")
    assert ref["tag"] == "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
    assert ref["digest"] == "sha256:abc"
    assert envinfo.parse_image_ref(None)["tag"] is None


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_trainer_skips_a_gpu_its_torch_cannot_run(monkeypatch, device):
    from densenet.device import resolve_device
    from densenet.outcome import Skip

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(TORCH_113_CU117))
    with pytest.raises(Skip, match="not for this GPU"):
        resolve_device(device)
