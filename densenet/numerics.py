"""Numerics flags: set them before any CUDA work, then read back what is actually in effect.

Every knob goes through feature detection (hasattr), never version parsing, so the same code
runs on torch 1.8 and on releases with the newer TF32 API (``fp32_precision``, torch >= 2.9).
"""

import os
import random
import warnings
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

# cuBLAS needs a fixed workspace for deterministic results (CUDA >= 10.2); harmless elsewhere.
CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure(
    cudnn: str = "on", tf32: str = "off", deterministic: str = "off", seed: int = 0
) -> Dict[str, Any]:
    """Set cuDNN, TF32, determinism and seeds; return ``flags`` (the values read back)."""
    if deterministic == "on":
        # Must be in the environment before cuBLAS initialises (first CUDA matmul).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    backend = torch.backends.cudnn
    backend.enabled = cudnn == "on"
    backend.deterministic = deterministic == "on"
    # Autotuning picks algorithms by timing, so runs can differ; off when asked for determinism.
    backend.benchmark = deterministic != "on"
    _set_tf32(tf32 == "on")
    if hasattr(torch, "use_deterministic_algorithms"):
        torch.use_deterministic_algorithms(deterministic == "on")
    seed_everything(seed)
    return read_flags(seed)


def _new_tf32_api():
    """The cuDNN conv backend module of torch >= 2.9, or None on older releases.

    Probe this before touching ``torch.backends.cuda.matmul.fp32_precision``: on old releases
    (torch 1.8 among them) that module *asserts* on an unknown attribute instead of raising
    AttributeError, so ``hasattr`` and ``getattr(..., None)`` raise AssertionError there.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return conv
    return None


def _set_tf32(on):
    matmul = torch.backends.cuda.matmul
    conv = _new_tf32_api()
    if conv is not None:
        matmul.fp32_precision = "tf32" if on else "ieee"
        conv.fp32_precision = "tf32" if on else "ieee"
        return
    if hasattr(matmul, "allow_tf32"):
        matmul.allow_tf32 = on
    if hasattr(torch.backends.cudnn, "allow_tf32"):
        torch.backends.cudnn.allow_tf32 = on


def read_flags(seed: Optional[int] = None) -> Dict[str, Any]:
    """The numerics settings in effect now, from whichever APIs this torch has."""
    b = torch.backends.cudnn
    flags = {
        "cudnn_enabled": bool(b.enabled),
        "cudnn_benchmark": bool(b.benchmark),
        "cudnn_deterministic": bool(b.deterministic),
        "cudnn_available": bool(b.is_available()),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "seed": seed,
    }
    conv = _new_tf32_api()
    flags["fp32_precision_matmul"] = None
    flags["fp32_precision_conv"] = None
    if conv is not None:
        flags["fp32_precision_matmul"] = _get(torch.backends.cuda.matmul, "fp32_precision")
        flags["fp32_precision_conv"] = _get(conv, "fp32_precision")
    else:
        # Only without the new API: on torch >= 2.9 the legacy getters warn, and raise once
        # cuDNN conv and RNN precisions differ (which setting only conv's makes them).
        flags["tf32_matmul_legacy"] = _get(torch.backends.cuda.matmul, "allow_tf32")
        flags["tf32_cudnn_legacy"] = _get(b, "allow_tf32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(torch, "get_float32_matmul_precision"):
            # Also raises on torch >= 2.9 once the per-backend API (fp32_precision) was used.
            try:
                flags["float32_matmul_precision"] = torch.get_float32_matmul_precision()
            except RuntimeError as exc:
                flags["float32_matmul_precision"] = "error: %s" % str(exc).splitlines()[0]
    if hasattr(torch, "are_deterministic_algorithms_enabled"):
        flags["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    flags["tf32_effective"] = tf32_effective(flags)
    return flags


def tf32_effective(flags: Mapping[str, Any]) -> bool:
    """True if either convolutions or matmuls may use TF32 under these flags."""
    conv = flags.get("fp32_precision_conv")
    matmul = flags.get("fp32_precision_matmul")
    if conv is not None or matmul is not None:
        return conv == "tf32" or matmul == "tf32"
    return bool(flags.get("tf32_cudnn_legacy")) or bool(flags.get("tf32_matmul_legacy"))


def applicability(device: torch.device) -> Dict[str, Any]:
    """On CPU the cuDNN and TF32 axes have no effect: say so instead of dropping them."""
    if device.type == "cuda":
        return {"cudnn": "applies", "tf32": "applies"}
    return {
        "cudnn": "not applicable on %s" % device.type,
        "tf32": "not applicable on %s" % device.type,
    }


def _get(obj, name):
    if obj is None:
        return None
    try:
        return getattr(obj, name, None)
    except Exception as exc:  # torch >= 2.9 raises when legacy and new TF32 flags disagree
        return "error: %s" % str(exc).splitlines()[0]
