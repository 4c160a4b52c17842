"""Atomic file writing: a temporary file, then a rename, so a reader (or a
re-run after a crash) never sees a half-written file."""

import contextlib
import json
import os

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it to `path` when the
    block ends without error, and removes it otherwise.

    The temporary name keeps `path`'s extension (writers such as Pillow
    pick the format from it) and starts with `path`, followed by
    `.tmp-<pid>`, so `records.remove_partial_files` finds leftovers of a
    killed run.
    """
    ext = os.path.splitext(path)[1]
    tmp = f"{path}.tmp-{os.getpid()}{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically (numpy scalars allowed)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False,
                  default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
        f.write("\n")


def write_failure_reason(error):
    """The OS's reason for a failed write (`No space left on device`, ...),
    without the op and file prefix TensorFlow puts before it."""
    message = getattr(error, "message", None) or str(error)
    return message.split(";")[-1].strip()
