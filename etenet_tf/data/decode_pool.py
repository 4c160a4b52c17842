"""Decoding in worker processes: the one pool of prepare, caption and Beam.

`OrderedDecoder` runs a job function (`video_decode.decode_job`) in
spawned worker processes and hands the results back in the order of the
jobs. At most `ahead` jobs are submitted and not yet consumed, so while
the consumer works on one batch (the model captioning it, a shard being
written) the workers decode the next ones, and memory holds `ahead`
results whatever the number of jobs: a library of 10,000 videos is never
decoded all at once. `DecodeWorker` is one such process, used on its own
by the Beam pipelines (one per DoFn instance).

A job function returns `(result, None)` or `(None, error message)`, and
job `j`'s name (for messages) is `j[0]` (the video path). The pool turns
every failure of a worker into such an error result for that job alone:

- time limit: a job still running after `timeout_s` seconds
  (`--decode_timeout_s`) is the video's error; its worker is killed and
  replaced, and the other jobs go on;
- a worker that dies (a decoder crash, the OOM killer) is the error of
  the job it held, and is replaced.

Workers are spawned (never forked from a process holding TensorFlow),
import only the job function's module, and ignore Ctrl-C and SIGTERM,
which are the parent's to handle: `close` (also on Ctrl-C, SIGTERM or an
error in the consumer) kills busy workers at once (a job is only ever
decoding, nothing of it is kept), so it never waits on a worker stuck in
a read. A worker ends by itself when its parent dies, however the parent
died (kill -9 included: `interrupts.die_with_parent`), and when its pipe
to the parent closes; it keeps no file (remote videos are fetched into
unnamed temporary files).
"""

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import time

from etenet_tf import interrupts
from etenet_tf.data import video_decode
from etenet_tf.errors import UserError

_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# a worker asked to stop (its pipe closed) gets this long before SIGKILL
_STOP_GRACE_S = 1.0
# longest single wait for results, so a stuck wait is impossible
_MAX_WAIT_S = 1.0
# workers that die before they are ready, in a row, before the pool gives up
_MAX_START_FAILURES = 3


class DecodeWorkerError(UserError):
    """Decoding worker processes cannot start."""


@contextlib.contextmanager
def _signals_blocked():
    # A worker inherits the signal mask of the thread that starts it, so a
    # Ctrl-C (sent to the whole process group) cannot reach one before its
    # initializer has made it ignore Ctrl-C.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _worker_main(fn, conn, parent_pid):
    """A worker's loop: `(key, job)` in, `(key, fn(job))` out, until the
    pipe closes or the parent dies."""
    video_decode.worker_init()
    interrupts.die_with_parent(parent_pid)
    try:
        conn.send(("ready", None))
        while True:
            message = conn.recv()
            if message is None:
                return
            key, job = message
            conn.send((key, fn(job)))
    except (EOFError, OSError):  # the parent closed the pipe or died
        return


def timeout_error(name, timeout_s):
    return (f"{name}: decoding took longer than {timeout_s:g}s (--decode_timeout_s); "
            "it was stopped")


def died_error(name, exitcode):
    how = f"killed by signal {-exitcode}" if exitcode and exitcode < 0 else \
        f"exit status {exitcode}"
    return (f"{name}: the decoding worker process died on this video ({how}: out of memory, "
            "or a decoder crash?)")


class DecodeWorker:
    """One spawned worker process running `fn` on one job at a time.

    Args:
        fn: a picklable function of a module that imports no TensorFlow,
            returning `(result, None)` or `(None, error message)`.
    """

    def __init__(self, fn):
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(fn, child, os.getpid()),
                                       daemon=True, name="etenet-decode")
        with _signals_blocked():
            self.process.start()
        child.close()
        self.ready = False
        self.key = None  # the job it holds, or None when idle
        self.started = None

    @property
    def busy(self):
        return self.key is not None

    def handles(self):
        return [self._conn, self.process.sentinel]

    def send(self, key, job):
        self._conn.send((key, job))
        self.key, self.started = key, time.monotonic()

    def receive(self):
        """`(key, result)` of a finished job, `("ready", None)` once started,
        or None: the worker died (`process.exitcode`), or nothing is there."""
        try:
            if not self._conn.poll():
                return None if self.process.is_alive() else ("died", None)
            message = self._conn.recv()
        except (EOFError, OSError):
            self.process.join(_STOP_GRACE_S)
            return "died", None
        if message[0] == "ready":
            self.ready = True
        else:
            self.key = None
        return message

    def run(self, job, timeout_s=None, name=None):
        """Runs one job here and now: its result, or an error result when it
        takes longer than `timeout_s` or the worker dies (then the worker
        must be replaced: `alive` is False)."""
        name = job[0] if name is None else name
        while not self.ready:
            message = self._wait(None)
            if message and message[0] == "died":
                return None, died_error(name, self.process.exitcode)
        self.send("job", job)
        deadline = None if timeout_s is None else self.started + timeout_s
        while True:
            message = self._wait(deadline)
            if message and message[0] == "job":
                return message[1]
            if message and message[0] == "died":
                return None, died_error(name, self.process.exitcode)
            if deadline is not None and time.monotonic() >= deadline:
                self.kill()
                return None, timeout_error(name, timeout_s)

    def _wait(self, deadline):
        wait = _MAX_WAIT_S if deadline is None else \
            max(0.0, min(_MAX_WAIT_S, deadline - time.monotonic()))
        multiprocessing.connection.wait(self.handles(), wait)
        return self.receive()

    @property
    def alive(self):
        return self.process.is_alive()

    def kill(self):
        """Ends the process now (SIGKILL) and reaps it."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(_STOP_GRACE_S)
        self._conn.close()

    def stop(self):
        """Ends an idle worker (its pipe closes), or kills a busy one."""
        if self.busy or not self.ready:
            self.kill()
            return
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self.process.join(_STOP_GRACE_S)
        self.kill()


class OrderedDecoder:
    """Iterates over `fn(job)` for each of `jobs`, in order, computed by
    `workers` processes at most `ahead` jobs in advance.

    Decoding starts in the constructor, so the caller can load a model
    while the first videos decode. Use it as a context manager (or call
    `close`): leaving early stops the workers without waiting for them.

    Args:
        fn: a picklable function of a module that imports no TensorFlow,
            returning `(result, None)` or `(None, error message)`.
        jobs: an iterable of picklable job tuples (read lazily); `job[0]`
            names the job in messages.
        workers: worker processes (>= 1).
        ahead: most jobs in flight or finished but not yet consumed (>= 1).
        timeout_s: most seconds one job may run (None: no limit); a job
            over it yields `(None, message)` and its worker is replaced.
    """

    def __init__(self, fn, jobs, *, workers, ahead, timeout_s=None):
        if workers < 1 or ahead < 1:
            raise ValueError("workers and ahead must be >= 1")
        self._fn, self._jobs, self._ahead, self._timeout = fn, iter(jobs), ahead, timeout_s
        self._slots = collections.deque()  # [key, job, result or None], in job order
        self._waiting = collections.deque()  # slots not sent to a worker yet
        self._by_key = {}
        self._next_key = 0
        self._closed = False
        self.replaced = 0  # workers killed (time limit) or died, and replaced
        self._start_failures = 0
        self._workers = [DecodeWorker(fn) for _ in range(workers)]
        self._fill()

    def _fill(self):
        while len(self._slots) < self._ahead:
            job = next(self._jobs, _END)
            if job is _END:
                break
            slot = [self._next_key, job, None]
            self._next_key += 1
            self._slots.append(slot)
            self._waiting.append(slot)
            self._by_key[slot[0]] = slot
        self._dispatch()

    def _dispatch(self):
        for worker in self._workers:
            if not self._waiting:
                return
            if worker.ready and not worker.busy:
                slot = self._waiting.popleft()
                worker.send(slot[0], slot[1])

    @property
    def in_flight(self):
        """Jobs submitted and not yet consumed."""
        return len(self._slots)

    def __iter__(self):
        return self

    def __next__(self):
        if not self._slots:
            self.close()
            raise StopIteration
        head = self._slots[0]
        while head[2] is None:
            self._poll()
        self._slots.popleft()
        del self._by_key[head[0]]
        self._fill()
        return head[2]

    def _poll(self):
        """Waits (a bounded time) for results; applies the time limit and
        replaces dead workers."""
        now = time.monotonic()
        wait = _MAX_WAIT_S
        if self._timeout is not None:
            for worker in self._workers:
                if worker.busy:
                    wait = min(wait, max(0.0, worker.started + self._timeout - now))
        handles = [h for worker in self._workers for h in worker.handles()]
        multiprocessing.connection.wait(handles, wait)
        for i, worker in enumerate(self._workers):
            message = worker.receive()
            if message and message[0] not in ("ready", "died"):
                self._by_key[message[0]][2] = message[1]
            error = None
            if message and message[0] == "died":
                error = died_error
            elif (worker.busy and self._timeout is not None
                  and time.monotonic() - worker.started >= self._timeout):
                error = timeout_error
            if error is None:
                if worker.ready:
                    self._start_failures = 0
                continue
            if not worker.ready:
                self._start_failures += 1
                if self._start_failures >= _MAX_START_FAILURES:
                    self.close()
                    raise DecodeWorkerError(
                        f"decoding worker processes die as they start (exit status "
                        f"{worker.process.exitcode}); check that this Python can import "
                        "etenet_tf, av and PIL, and that memory is free")
            if worker.busy:
                slot = self._by_key[worker.key]
                slot[2] = (None, error(slot[1][0], worker.process.exitcode
                                       if error is died_error else self._timeout))
            worker.kill()
            self.replaced += 1
            self._workers[i] = DecodeWorker(self._fn)
        self._dispatch()

    def close(self):
        """Stops the workers; busy ones are killed, not waited for."""
        if self._closed:
            return
        self._closed = True
        self._slots.clear()
        self._waiting.clear()
        with _signals_blocked():  # a second Ctrl-C must not leave a worker behind
            for worker in self._workers:
                worker.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_END = object()
