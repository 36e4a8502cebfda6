"""Signal handling shared by the local and docker runners (standard library only)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

if TYPE_CHECKING:
    from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived while a job ran (BaseException: no `except Exception` between
    the handler and the runner's cleanup may swallow it and call the job failed)."""

    def __init__(self, signum: int) -> None:
        BaseException.__init__(self, "interrupted by signal %d" % signum)
        self.signum = signum


def catch_signals(
    handler: Callable[[int, Optional[FrameType]], None],
) -> dict[signal.Signals, Union[Callable[[int, Optional[FrameType]], Any], int, None]]:
    """Install handler for SIGINT and SIGTERM; return the old handlers, to restore them.

    A signal the caller ignores stays ignored: a job started in the background, where shells
    set SIGINT to ignored, must not stop on a Ctrl-C meant for the terminal; and a re-raised
    ignored signal would vanish, leaving an interruption to be taken for a failure."""
    old = {}
    for s in STOP_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            old[s] = signal.signal(s, handler)
    return old


def restore_signals(
    old: Mapping[signal.Signals, Union[Callable[[int, Optional[FrameType]], Any], int, None]],
) -> None:
    for s, handler in old.items():
        signal.signal(s, handler)
