"""Which videos to caption: files, directories, glob patterns and list files.

`expand_video_inputs` turns what a user names (`--videos`, `--videos_from`)
into one ordered list of video files: a directory is searched recursively
for files with a video extension (`examples.VIDEO_EXTENSIONS`), a pattern
with `*`, `?` or `[` is expanded (`**` crosses directories), a list file
holds one path per line (blank lines and `#` comments skipped; relative
paths are relative to the list file; `-` is standard input, its paths
relative to the current directory). Each video appears once, at its
first mention. A name that matches nothing is reported, not fatal.
`caption_inputs` is what both caption runners (local and Beam) read:
the same, plus the old comma-separated `--videos` form.

Names are taken as the file system holds them: a name that is not UTF-8
is a `str` with its undecodable bytes as surrogates (`os.fsdecode`), and
`os.fsencode` gives the bytes back. Only regular files are decoded: a
named pipe, socket or device found here gets its own error from the
decoder, which refuses it without opening it.

Paths go through `tf.io.gfile` only where they are remote (`gs://`,
`s3://`...), so the local path needs no TensorFlow (the caption workers
import this module).
"""

import glob
import os
import sys

from etenet_tf.data.examples import VIDEO_EXTENSIONS

_PATTERN_CHARS = ("*", "?", "[")


def _is_remote(path):
    return "://" in path


def _gfile():
    import tensorflow as tf  # only for remote paths
    return tf.io.gfile


def _is_video(path):
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _walk(directory):
    """Video files under `directory`, sorted, recursively."""
    if _is_remote(directory):
        found = []
        for root, _, names in _gfile().walk(directory):
            found += [root.rstrip("/") + "/" + n for n in names if _is_video(n)]
        return sorted(found)
    found = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        found += [os.path.join(root, n) for n in sorted(names) if _is_video(n)]
    return found


def _expand(name):
    """`(videos, reason or None)` of one named input."""
    remote = _is_remote(name)
    isdir = _gfile().isdir if remote else os.path.isdir
    exists = _gfile().exists if remote else os.path.exists
    if any(c in name for c in _PATTERN_CHARS) and not exists(name):
        matches = sorted(_gfile().glob(name) if remote else glob.glob(name, recursive=True))
        videos = []
        for match in matches:
            videos += _walk(match) if isdir(match) else [match] if _is_video(match) else []
        return videos, None if videos else "no video file matches this pattern"
    if isdir(name):
        videos = _walk(name)
        return videos, None if videos else "no video file in this directory"
    if exists(name):
        return [name], None  # a file named explicitly is tried whatever its extension
    return [], "no such file or directory"


def read_list_file(path):
    """The paths listed in a list file (one per line; `-`: standard input)."""
    if path == "-":
        lines = [line.strip() for line in sys.stdin.read().splitlines()]
        return [line for line in lines if line and not line.startswith("#")]
    opener = _gfile().GFile if _is_remote(path) else open
    with opener(path, "r") as f:
        lines = [line.strip() for line in f.read().splitlines()]
    base = os.path.dirname(path)
    return [_resolve(line, base, _is_remote(path))
            for line in lines if line and not line.startswith("#")]


def _resolve(line, base, remote):
    """A listed path, relative to the list file's directory."""
    if _is_remote(line) or os.path.isabs(line) or not base:
        return line
    return base.rstrip("/") + "/" + line if remote else os.path.join(base, line)


def expand_video_inputs(names=(), list_files=()):
    """The videos that `names` and `list_files` denote.

    Args:
        names: files, directories and glob patterns (e.g. `--videos`).
        list_files: files listing one such name per line (`--videos_from`).

    Returns:
        `(videos, problems)`: the video paths in order of first mention,
        each once; and `(name, reason)` for every name that matched nothing
        (a missing list file included).
    """
    videos, seen, problems = [], set(), []
    queue = list(names)
    for list_file in list_files:
        try:
            queue += read_list_file(list_file)
        except OSError as e:
            problems.append((list_file, f"cannot read the list file ({e.strerror or e})"))
    for name in queue:
        found, reason = _expand(name)
        if reason:
            problems.append((name, reason))
        for video in found:
            key = video if _is_remote(video) else os.path.abspath(video)
            if key not in seen:
                seen.add(key)
                videos.append(video)
    return videos, problems


def legacy_comma_names(names, warn):
    """`--videos` was one comma-separated flag: a value that names nothing
    but whose comma-separated parts do is read the old way (with a note
    through `warn`), so old commands keep working, and a file whose name
    has a comma is still one file when it exists."""
    result = []
    for name in names:
        if "," in name:
            found, _ = expand_video_inputs([name])
            parts = [p for p in name.split(",") if p]
            if not found and any(expand_video_inputs([p])[0] for p in parts):
                warn(f"note: --videos={name} names no file; read as {len(parts)} names "
                     "separated by commas (repeat --videos for several names)")
                result += parts
                continue
        result.append(name)
    return result


def caption_inputs(names=(), list_files=(), warn=None):
    """The videos to caption, as every caption runner reads them:
    `expand_video_inputs` of `names` (`--videos`, the comma-separated form
    included: `legacy_comma_names`) and `list_files` (`--videos_from`).

    Args:
        names: `--videos`.
        list_files: `--videos_from`.
        warn: callable(line) for notes (default: print to stderr).

    Returns:
        `(videos, problems)` as `expand_video_inputs`.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    return expand_video_inputs(legacy_comma_names(names, warn), list_files)
