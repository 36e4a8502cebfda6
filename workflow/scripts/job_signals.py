"""Signal handling shared by the local and docker runners (standard library only)."""

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived while a job ran (BaseException: no `except Exception` between
    the handler and the runner's cleanup may swallow it and call the job failed)."""

    def __init__(self, signum):
        BaseException.__init__(self, "interrupted by signal %d" % signum)
        self.signum = signum


def catch_signals(handler):
    """Install handler for SIGINT and SIGTERM; return the old handlers, to restore them.

    A signal the caller ignores stays ignored: a job started in the background, where shells
    set SIGINT to ignored, must not stop on a Ctrl-C meant for the terminal; and a re-raised
    ignored signal would vanish, leaving an interruption to be taken for a failure."""
    old = {}
    for s in STOP_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            old[s] = signal.signal(s, handler)
    return old


def restore_signals(old):
    for s, handler in old.items():
        signal.signal(s, handler)
