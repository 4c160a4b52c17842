"""Video examples: what every data source gives `prepare`.

A source (`etenet_tf.data.sources`) turns annotation files into a list of
`VideoExample`, so `prepare` does not care where the annotations came
from. Split names are normalised to `train`, `val`, `test`.

Video ids come from files a user downloaded; they must never name a file
outside `--video_dir`. Absolute ids and ids that resolve outside it are
rejected (reported as `unsafe_id`, fatal with `--strict`), and so is an
id whose file is a symbolic link that resolves outside it (the path is
resolved, links included, before the check: `os.path.realpath`).

Annotation files and `--video_dir` may be remote (`gs://...`, see
`etenet_tf.files`): a remote video directory is listed once, recursively.
"""

import dataclasses
import json
import os
import posixpath
import sys
import unicodedata

from etenet_tf import files
from etenet_tf.errors import UserError

SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".webm", ".mkv", ".mov", ".flv", ".gif", ".mpg", ".mpeg",
    ".m4v", ".wmv", ".3gp", ".ogv",
)
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val",
    "test": "test", "testing": "test",
}


class AnnotationError(UserError):
    """An annotation file is missing, malformed or inconsistent."""


@dataclasses.dataclass
class VideoExample:
    """One video and its reference captions.

    Args:
        video_id: unique id of the video within the dataset.
        split: one of `train`, `val`, `test`.
        captions: reference captions (raw text).
        path: resolved path of the video file, or None if it was not found.
        problem: None, or why the video cannot be used (`missing`,
            `unsafe_id`).
        attributes: None, or what is known to be in the clip:
            `{attribute: value or [value, paraphrase, ...]}` (see
            `etenet_tf.data.attributes`).
        empty_references: captions dropped because they hold no word (no
            letter or digit, e.g. only emoji): they would tokenise to nothing.
    """

    video_id: str
    split: str
    captions: list
    path: str = None
    problem: str = None
    attributes: dict = None
    empty_references: list = dataclasses.field(default_factory=list)


def normalize_split(name, source):
    split = _SPLIT_ALIASES.get(str(name).strip().lower())
    if split is None:
        raise AnnotationError(
            f"{source}: unknown split {name!r}; use one of train, val, test"
        )
    return split


class VideoIndex:
    """Finds video files in `video_dir` by id.

    A video `ID` matches `ID.<ext>`, `ID` itself (a relative path with
    extension, as in custom CSVs) or `<prefix>_ID.<ext>` (e.g.
    `msrvtt_video9149.mp4` for `video9149`), for any known extension.

    Args:
        video_dir: directory holding the videos (may be None: all missing).
    """

    def __init__(self, video_dir):
        self.video_dir = video_dir
        self._remote = bool(video_dir) and files.is_remote(video_dir)
        self._files = None  # remote: every file under the root, relative to it
        if self._remote:
            self._root = video_dir.rstrip("/")
        else:
            self._root = os.path.realpath(video_dir) if video_dir else None
        self._by_stem = {}
        names = []
        if self._remote:
            self._files = self._remote_files()
            names = sorted(n for n in self._files if "/" not in n)
        elif self._root and os.path.isdir(self._root):
            names = sorted(os.listdir(self._root))
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            path = os.path.join(self._root, name)
            self._by_stem.setdefault(stem, path)
            # every '_'-separated suffix, for prefixed file names
            parts = stem.split("_")
            for i in range(1, len(parts)):
                self._by_stem.setdefault("_".join(parts[i:]), path)

    def _remote_files(self):
        """Paths of every file under a remote root, relative to it (one
        listing: checking each video on its own would be one request each)."""
        found = set()
        if not files.isdir(self._root):
            return found
        with files.remote_errors(self._root):
            for directory, _, names in files.gfile().walk(self._root):
                relative = directory[len(self._root):].strip("/")
                found.update(posixpath.join(relative, n) if relative else n for n in names)
        return found

    def is_safe(self, video_id):
        """True if `video_id` stays inside `video_dir`."""
        if not video_id or os.path.isabs(video_id) or "\x00" in video_id:
            return False
        if video_id.startswith(("~", "\\")) or ":" in video_id.split("/")[0]:
            return False
        if self._remote:  # no links in an object store: the name alone decides
            return posixpath.normpath(video_id).split("/")[0] != ".."
        root = self._root or os.path.realpath(".")
        target = os.path.realpath(os.path.join(root, video_id))
        return target == root or target.startswith(root + os.sep)

    def resolve(self, video_id):
        """Returns `(path or None, problem or None)` for a video id."""
        if not self.is_safe(video_id):
            return None, "unsafe_id"
        if self._root is None:
            return None, "missing"
        if self._remote:
            relative = posixpath.normpath(video_id)
            if relative in self._files:
                return f"{self._root}/{relative}", None
            path = self._by_stem.get(video_id)
            return (path, None) if path else (None, "missing")
        direct = os.path.join(self._root, video_id)
        path = direct if os.path.isfile(direct) else self._by_stem.get(video_id)
        if path is None:
            return None, "missing"
        # the file itself may be a link out of the directory (`stem.mp4 ->
        # /elsewhere/secret.mp4`): what it resolves to must stay inside
        target = os.path.realpath(path)
        if not target.startswith(self._root + os.sep):
            return None, "unsafe_id"
        return target, None


def directory_of(path):
    """The directory of a file: absolute when local, the URL's when remote."""
    return os.path.dirname(path if files.is_remote(path) else os.path.abspath(path))


def check_annotation_file(path, what="annotation file"):
    """Raises `AnnotationError` unless `path` is a regular file (local) or an
    object (remote): "not found", "is a directory", or "not a regular file"
    (a FIFO or a device, which reading would block on)."""
    if files.isfile(path):
        return
    if files.isdir(path):
        raise AnnotationError(f"{what} {path} is a directory; give the file itself "
                              f"(e.g. {path.rstrip('/')}/<name>)")
    if files.exists(path):
        raise AnnotationError(f"{what} {path} is not a regular file (a FIFO, socket or device); "
                              "give the file itself")
    raise AnnotationError(f"{what} not found: {path}")


def read_json(path):
    check_annotation_file(path)
    try:
        return json.loads(files.read_text(path))
    except FileNotFoundError:
        raise AnnotationError(f"annotation file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from None


def _clean_captions(captions):
    """Drops empty and non-string captions; keeps order."""
    return [c.strip() for c in captions if isinstance(c, str) and c.strip()]


def has_words(caption):
    """Whether a caption holds a word for the tokenizer: a letter or a digit
    after NFKC (`etenet_tf.text.tokenizer` turns everything else into
    spaces). Pure Python: sources run where TensorFlow is not imported."""
    return any(unicodedata.category(c)[0] in "LN" for c in unicodedata.normalize("NFKC", caption))


def finish(examples, video_dir):
    """Resolves paths; training videos without a usable caption are marked.

    Validation and test videos may have no reference (a user's own clips to
    caption); they are kept and simply not scored. References without a word
    (only emoji or punctuation) are dropped, kept in `empty_references` for
    prepare's report, and counted in one warning line on stderr.
    """
    index = VideoIndex(video_dir)
    out = []
    for ex in examples:
        captions = _clean_captions(ex.captions)
        ex.captions = [c for c in captions if has_words(c)]
        ex.empty_references = [c for c in captions if not has_words(c)]
        if not ex.captions and ex.split == "train":
            ex.problem = "no_captions"
        else:
            ex.path, ex.problem = index.resolve(ex.video_id)
        out.append(ex)
    empty = [(ex.video_id, c) for ex in out for c in ex.empty_references]
    if empty:
        video, caption = empty[0]
        print(f"warning: {len(empty)} reference caption(s) hold no word (no letter or digit) and "
              f"are dropped, e.g. {caption!r} of video {video!r}; prepare_report.json lists them "
              "under empty_references", file=sys.stderr, flush=True)
    return out


def natural_key(text):
    digits = "".join(c for c in text if c.isdigit())
    return (text.rstrip("0123456789"), int(digits) if digits else -1, text)
