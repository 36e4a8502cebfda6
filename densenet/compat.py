"""Feature detection for old torch releases (DESIGN.md: detect, never parse version strings).

Detect before calling, never by catching an error from the call: old releases reject unknown
keywords in different ways (torch 1.8's checkpoint raises ValueError, its torch.load hands them
to the unpickler), and a failed first attempt may already have run code or consumed a stream.
"""

import inspect
from typing import Callable


def accepts(function: Callable, name: str) -> bool:
    """True if ``function`` declares a parameter called ``name``."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to read (e.g. a builtin)
        return False
