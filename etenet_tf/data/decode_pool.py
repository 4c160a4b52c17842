"""Decoding in worker processes, in order, a bounded number of jobs ahead.

`OrderedDecoder` runs a job function (`video_decode.decode_frames_job`) in
spawned worker processes and hands the results back in the order of the
jobs. At most `ahead` jobs are submitted and not yet consumed, so while
the consumer works on one batch (the model captioning it) the workers
decode the next ones, and memory holds `ahead` results whatever the number
of jobs: a library of 10,000 videos is never decoded all at once.

Like prepare's pool, the workers are spawned (never forked from a process
holding TensorFlow), import only the job function's module, and ignore
Ctrl-C and SIGTERM, which are the parent's to handle: it cancels what is
not started and stops without waiting.
"""

import collections
import concurrent.futures
import contextlib
import multiprocessing
import signal

from etenet_tf.data import video_decode
from etenet_tf.errors import UserError

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class DecodeWorkerError(UserError):
    """A decoding worker process died (killed, out of memory)."""


@contextlib.contextmanager
def _signals_blocked():
    # A worker inherits the signal mask of the thread that starts it, so a
    # Ctrl-C (sent to the whole process group) cannot reach one before its
    # initializer has made it ignore Ctrl-C. submit() may start a worker.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class OrderedDecoder:
    """Iterates over `fn(job)` for each of `jobs`, in order, computed by
    `workers` processes at most `ahead` jobs in advance.

    Decoding starts in the constructor, so the caller can load a model
    while the first videos decode. Use it as a context manager (or call
    `close`): leaving early cancels the jobs not started.

    Args:
        fn: a picklable function of a module that imports no TensorFlow.
        jobs: an iterable of picklable job arguments (read lazily).
        workers: worker processes (>= 1).
        ahead: most jobs in flight or finished but not yet consumed (>= 1).
    """

    def __init__(self, fn, jobs, *, workers, ahead):
        if workers < 1 or ahead < 1:
            raise ValueError("workers and ahead must be >= 1")
        self._fn, self._jobs, self._ahead = fn, iter(jobs), ahead
        self._pending = collections.deque()
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=video_decode.worker_init)
        self._closed = False
        self._fill()

    def _fill(self):
        while len(self._pending) < self._ahead:
            job = next(self._jobs, _END)
            if job is _END:
                return
            with _signals_blocked():
                self._pending.append(self._pool.submit(self._fn, job))

    @property
    def in_flight(self):
        """Jobs submitted and not yet consumed."""
        return len(self._pending)

    def __iter__(self):
        return self

    def __next__(self):
        if not self._pending:
            self.close()
            raise StopIteration
        try:
            result = self._pending.popleft().result()
        except concurrent.futures.process.BrokenProcessPool:
            self.close()
            raise DecodeWorkerError(
                "a decoding worker process died (killed, or out of memory?); re-run the same "
                "command") from None
        self._fill()
        return result

    def close(self):
        """Stops the workers; jobs not started are cancelled, not waited for."""
        if self._closed:
            return
        self._closed = True
        finished = not self._pending
        self._pending.clear()
        self._pool.shutdown(wait=finished, cancel_futures=not finished)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_END = object()
