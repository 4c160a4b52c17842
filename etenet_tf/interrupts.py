"""Ctrl-C and SIGTERM stop a run cleanly, at a safe point.

SIGTERM is what `docker stop`, Kubernetes and Slurm send before they kill
a process; it gets the same treatment as Ctrl-C. `install()` (called by
`main.py`) makes both raise `Interrupted`, a `KeyboardInterrupt`, in the
main thread. Code that must not be cut in half (a training step with its
bookkeeping, a checkpoint save) runs inside `deferred()`: a signal that
arrives there takes effect when the block ends. Everything else is safe
to stop anywhere, since every file is written atomically.

The training loop saves a resume checkpoint when it is interrupted; the
command line then prints one line and exits with 128 + the signal number
(130 for Ctrl-C, 143 for SIGTERM).
"""

import contextlib
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM arrived.

    Attributes:
        signum: the signal number.
        detail: what was saved on the way out (set by whoever saved it).
    """

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
        self.detail = None


_state = {"deferring": 0, "pending": None}


def _handler(signum, frame):
    if _state["deferring"]:
        _state["pending"] = _state["pending"] or signum
        return
    raise Interrupted(signum)


def install():
    """Routes Ctrl-C and SIGTERM to `Interrupted` (call from the main thread)."""
    for sig in SIGNALS:
        signal.signal(sig, _handler)


@contextlib.contextmanager
def deferred():
    """Runs a block that a signal must not cut: a signal arriving in it is
    raised as `Interrupted` when the block has finished normally."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
    if not _state["deferring"] and _state["pending"]:
        signum, _state["pending"] = _state["pending"], None
        raise Interrupted(signum)


def signal_name(error):
    """`Ctrl-C` or `SIGTERM` for a KeyboardInterrupt."""
    signum = getattr(error, "signum", signal.SIGINT)
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def exit_code(error):
    """128 + the signal number, as a shell reports a process it stopped."""
    return 128 + int(getattr(error, "signum", signal.SIGINT))


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_watched = {}


def die_with_parent(parent_pid, poll_s=0.5):
    """Makes this (worker) process end when its parent dies, however the
    parent died (kill -9 included), so no worker outlives its run.

    Two guards: the kernel's parent-death signal (`prctl(PR_SET_PDEATHSIG,
    SIGKILL)`, Linux), and a daemon thread that checks every `poll_s`
    seconds that the parent is still `parent_pid` (any POSIX system, and
    the case where the kernel's signal is tied to a thread of the parent
    that ended). A parent that died before this call is noticed at once.

    Args:
        parent_pid: the pid of the process that started this one.
        poll_s: seconds between two checks of the parent pid.
    """
    import ctypes
    import ctypes.util
    import os
    import threading
    import time

    if _watched.get("parent") == parent_pid:
        return
    _watched["parent"] = parent_pid
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
