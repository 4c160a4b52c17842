"""Writing files safely: atomic writes, write-target checks and run locks.

Atomic writes go to a temporary name, then a rename, so a reader (or a
re-run after a crash) never sees a half-written file, and a failed write
leaves neither a partial file nor its temporary behind. `atomic_path` is
the one place that does it, for any writer (JSON, text, TFRecords, PyAV,
SavedModel directories).

Remote paths: a URL (`gs://bucket/dir`, `s3://...`, anything with `://`
that `tf.io.gfile` knows, through TensorFlow's filesystem plugins) goes
through `tf.io.gfile`, imported only then, so local work never needs
TensorFlow here. `atomic_path`, `write_text`/`write_json` and the small
helpers below (`exists`, `isfile`, `read_text`, `glob_paths`, `remove`,
...) take either kind; a remote failure is raised as an `OSError` naming
the path, as a local one is. A remote rename may be a copy and a delete
(object stores): readers still never see a partial file, since the final
name appears only when the copy is complete.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid

import numpy as np

from etenet_tf.errors import UsageError, UserError


class WriteTargetError(UsageError):
    """A path the user gave cannot be written (a file where a directory is
    needed, no permission, a missing parent directory...)."""


class LockedError(UserError):
    """Another run holds the lock of a directory."""


def _remove(path):
    if is_remote(path):
        with contextlib.suppress(Exception):
            if gfile().isdir(path):
                gfile().rmtree(path)
            elif gfile().exists(path):
                gfile().remove(path)
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


@contextlib.contextmanager
def atomic_path(path, tmp=None):
    """Yields a temporary path to write `path` through, then renames it.

    The caller writes a file (or a directory) at the yielded path; when the
    block ends normally it replaces `path` in one rename. If the block (or
    the rename) fails, the temporary is removed and the error re-raised; an
    OSError about the temporary is re-raised naming `path` instead.

    Args:
        path: the final path (local, or remote: see the module doc).
        tmp: the temporary path (default `<path>.tmp-<pid>`, beside it so
            the rename stays on one file system; remote: `<path>.tmp-<random
            hex>`, since writers on several machines share no pid space).
    """
    remote = is_remote(path)
    tmp = tmp or (f"{path}.tmp-{uuid.uuid4().hex}" if remote else f"{path}.tmp-{os.getpid()}")
    try:
        yield tmp
        if remote:
            with remote_errors(path):
                gfile().rename(tmp, path, overwrite=True)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        _remove(tmp)
        if isinstance(e, OSError) and e.filename == tmp and e.errno is not None:
            raise type(e)(e.errno, e.strerror, path) from e
        raise


def write_text(path, text):
    """Writes a string to `path` atomically (UTF-8)."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path, data):
    """Writes bytes to `path` atomically (local or remote)."""
    with atomic_path(path) as tmp:
        if is_remote(tmp):
            with remote_errors(path), gfile().GFile(tmp, "wb") as f:
                f.write(data)
        else:
            with open(tmp, "wb") as f:
                f.write(data)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_dumps(obj, **kwargs):
    """`json.dumps(obj, ensure_ascii=False)` whose text is always valid
    UTF-8: text stays as it is, and a lone surrogate (an undecodable byte
    of a file name that is not UTF-8, as `os.fsdecode` gives it: byte
    0xE9 is U+DCE9) is written as its JSON escape `\\udce9`. `json.loads`
    reads it back to the same `str`, and `os.fsencode` of that gives the
    name's bytes back, so any file name goes through JSON losslessly."""
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically (numpy scalars allowed;
    any file name in it: `json_dumps`)."""
    write_text(path, json_dumps(
        obj, indent=1,
        default=lambda o: o.item() if isinstance(o, np.generic) else str(o)) + "\n")


def write_failure_reason(error):
    """The OS's reason for a failed write (`No space left on device`, ...),
    without the op and file prefix TensorFlow puts before it."""
    message = getattr(error, "message", None) or str(error)
    return message.split(";")[-1].strip()


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


def write_failure_advice(error, directory):
    """What to do about a failed write in `directory`, from its reason:
    free disk space, make the directory writable, or check it."""
    reason = write_failure_reason(error).lower()
    code = getattr(error, "errno", None)
    if code in _NO_SPACE or any(s in reason for s in (
            "no space", "quota", "file too large")):
        return "Free disk space"
    if code in _NO_PERMISSION or any(s in reason for s in (
            "permission denied", "read-only file system", "operation not permitted")) \
            or type(error).__name__ == "PermissionDeniedError":
        return f"Make {directory} writable (or use another directory)"
    return f"Check {directory}"


def _probe_write(directory):
    """Creates and removes a file in `directory`; raises OSError if it cannot."""
    fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=directory)
    os.close(fd)
    os.remove(probe)


def ensure_directory(path, flag, label=None):
    """Creates directory `path` if needed and checks that it is writable.

    Args:
        path: the directory.
        flag: the flag that named it (for the message), e.g. `model_dir`.
        label: how the message names it (default `--flag=path`).

    Raises:
        WriteTargetError: `path` is a file, cannot be created or is not
            writable; the message names the flag and the path.
    """
    label = label or f"--{flag}={path}"
    if os.path.exists(path) and not os.path.isdir(path):
        raise WriteTargetError(f"{label} is a file, not a directory; give a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise WriteTargetError(f"cannot create {label} ({e.strerror}); give a directory that "
                               "can be created") from None
    try:
        _probe_write(path)
    except OSError as e:
        raise WriteTargetError(f"cannot write in {label} ({e.strerror}); make it writable or "
                               "give another directory") from None


def check_file_target(path, flag):
    """Checks, before any work, that a file can be written at `path`.

    Raises:
        WriteTargetError: `path` is a directory, its directory does not
            exist or is not writable.
    """
    if os.path.isdir(path):
        raise WriteTargetError(f"--{flag}={path} is a directory; give a file name, e.g. "
                               f"{os.path.join(path, 'out.json')}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise WriteTargetError(f"--{flag}={path}: the directory {parent} does not exist; "
                               "create it or give another path")
    try:
        _probe_write(parent)
    except OSError as e:
        raise WriteTargetError(f"--{flag}={path}: cannot write in {parent} ({e.strerror}); "
                               "make it writable or give another path") from None


LOCK_FILE = ".lock"


@contextlib.contextmanager
def exclusive_lock(directory, what, name=LOCK_FILE):
    """Holds an exclusive lock on `directory` (its `.lock` file) while the
    block runs, so that two runs never write the same directory at once.

    The lock is an `fcntl.flock` lock: the kernel releases it when its
    process ends, however it ends, so a lock left by a killed run is simply
    taken over. The file holds the holder's pid, host and task for the
    message another run gets; it stays in place (removing it would race
    with a run that is just opening it).

    Args:
        directory: the directory to lock (created if missing).
        what: the task, e.g. `--stage=pretrain`.
        name: the lock file's name in `directory`.

    Raises:
        LockedError: another live process holds the lock.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode("utf-8", "replace").strip() or "pid unknown"
            raise LockedError(
                f"{directory} is in use by another run ({holder}); wait for it to end or stop "
                "it, then re-run") from None
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()}, {what}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n").encode("utf-8"))
        yield path
    finally:
        os.close(fd)


# -- Local or remote paths (see the module doc) --------------------------------


def is_remote(path):
    """True for a URL (`gs://...`, `s3://...`, `ram://...`): read and written
    through `tf.io.gfile`."""
    return "://" in str(path)


def gfile():
    """`tf.io.gfile`, imported on first use (remote paths only)."""
    import tensorflow as tf
    return tf.io.gfile


@contextlib.contextmanager
def remote_errors(path):
    """Raises TensorFlow's file errors in the block as `OSError`s naming `path`."""
    import tensorflow as tf
    try:
        yield
    except tf.errors.OpError as e:
        code = {tf.errors.NotFoundError: errno.ENOENT,
                tf.errors.PermissionDeniedError: errno.EACCES,
                tf.errors.ResourceExhaustedError: errno.ENOSPC}.get(type(e), errno.EIO)
        reason = (getattr(e, "message", None) or str(e)).strip().splitlines()
        raise OSError(code, reason[0] if reason else type(e).__name__, path) from e


def exists(path):
    if not is_remote(path):
        return os.path.exists(path)
    with remote_errors(path):
        return gfile().exists(path)


def isfile(path):
    if not is_remote(path):
        return os.path.isfile(path)
    with remote_errors(path):
        return gfile().exists(path) and not gfile().isdir(path)


def isdir(path):
    if not is_remote(path):
        return os.path.isdir(path)
    with remote_errors(path):
        return gfile().isdir(path)


def makedirs(path):
    """Creates directory `path` and its parents if missing."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)
        return
    with remote_errors(path):
        gfile().makedirs(path)


def glob_paths(pattern):
    """The sorted paths matching a glob pattern (`*`, `?`, `[...]` within one
    path component)."""
    if not is_remote(pattern):
        import glob
        return sorted(glob.glob(pattern))
    with remote_errors(pattern):
        return sorted(gfile().glob(pattern))


def remove(path):
    """Deletes file `path`; a missing file is no error."""
    if not is_remote(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    with contextlib.suppress(FileNotFoundError), remote_errors(path):
        gfile().remove(path)


def read_bytes(path):
    if not is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    with remote_errors(path), gfile().GFile(path, "rb") as f:
        return f.read()


def read_text(path, encoding="utf-8"):
    """The text of file `path` (raises `OSError`, or `UnicodeDecodeError`)."""
    if not is_remote(path):
        with open(path, encoding=encoding) as f:
            return f.read()
    return read_bytes(path).decode(encoding)


def open_binary(path):
    """A file object reading `path` (a `tf.io.gfile.GFile` when remote)."""
    if not is_remote(path):
        return open(path, "rb")
    with remote_errors(path):
        return gfile().GFile(path, "rb")
