"""Atomic file writing: a temporary file, then a rename, so a reader (or a
re-run after a crash) never sees a half-written file."""

import json
import os

import numpy as np


def write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically (numpy scalars allowed)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False,
                  default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
        f.write("\n")
    os.replace(tmp, path)


def write_failure_reason(error):
    """The OS's reason for a failed write (`No space left on device`, ...),
    without the op and file prefix TensorFlow puts before it."""
    message = getattr(error, "message", None) or str(error)
    return message.split(";")[-1].strip()
