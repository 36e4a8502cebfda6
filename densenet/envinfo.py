"""What ran where: versions, devices, image and git identity, for env.json and `densenet env`.

Inside a container there is no git checkout and the hostname is the container's, so the
runner passes the host's view in through DENSENET_GIT_SHA, DENSENET_HOST and --image-ref.
"""

import os
import platform
import subprocess
import sys
from typing import Any, Dict, Optional

import numpy as np
import torch

from . import gitinfo


def parse_image_ref(ref: Optional[str]) -> Dict[str, Optional[str]]:
    """'repo:tag@sha256:abc' -> {"ref", "tag", "digest"}; None -> not in a container image."""
    if not ref:
        return {"ref": None, "tag": None, "digest": None}
    tag, _, digest = ref.partition("@")
    return {"ref": ref, "tag": tag or None, "digest": digest or None}


def git_sha() -> Optional[str]:
    """The host runner's view (DENSENET_GIT_SHA) in a container, else this checkout's."""
    return os.environ.get("DENSENET_GIT_SHA") or gitinfo.describe(
        os.path.dirname(os.path.abspath(__file__))
    )


def cuda_arch_support(index: int = 0) -> Dict[str, Any]:
    """Does this torch build carry kernels for GPU `index`?

    Machine code (sm_XY) runs on GPUs of the same major version and an equal or higher minor
    one (sm_80 runs on an sm_86 card, never on an sm_90 one); PTX (compute_XY) can be
    JIT-compiled for any card with capability >= XY. An empty arch list (CPU-only or very old
    builds) is not held against the card: the first kernel launch will tell.
    """
    if not torch.cuda.is_available():
        return {"supported": False, "reason": "no CUDA device visible"}
    major, minor = torch.cuda.get_device_capability(index)
    cap = major * 10 + minor
    arch = list(torch.cuda.get_arch_list()) if hasattr(torch.cuda, "get_arch_list") else []
    sm = {int(a.split("_")[1]) for a in arch if a.startswith("sm_") and a[3:].isdigit()}
    ptx = {int(a.split("_")[1]) for a in arch if a.startswith("compute_") and a[8:].isdigit()}
    ok = any(s // 10 == major and s <= cap for s in sm) or any(p <= cap for p in ptx) or not arch
    reason = (
        None
        if ok
        else (
            "torch %s has kernels for %s, not for this GPU (sm_%d)"
            % (torch.__version__, ", ".join(arch), cap)
        )
    )
    return {
        "supported": ok,
        "capability": "%d.%d" % (major, minor),
        "arch_list": arch,
        "reason": reason,
    }


def gpu_info() -> Optional[Dict[str, Any]]:
    if not torch.cuda.is_available():
        return None
    info = {
        "name": torch.cuda.get_device_name(0),
        "capability": "%d.%d" % torch.cuda.get_device_capability(0),
        "count": torch.cuda.device_count(),
        "memory_mb": torch.cuda.get_device_properties(0).total_memory // 2**20,
        "driver": None,
    }
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        info["driver"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def environ(image_ref: Optional[str] = None) -> Dict[str, Any]:
    """Versions, devices and identities of the running environment."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "gpu": gpu_info(),
        "cuda_arch": cuda_arch_support() if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "host": os.environ.get("DENSENET_HOST") or platform.node(),
        "image": parse_image_ref(image_ref or os.environ.get("DENSENET_IMAGE_REF")),
        "git_sha": git_sha(),
    }
