"""A user's own data: a CSV or JSONL of video, caption (, split, attributes)."""

import csv
import io
import json

from etenet_tf import files
from etenet_tf.data.examples import (
    AnnotationError,
    VideoExample,
    directory_of,
    finish,
    normalize_split,
)


def load_custom(path, video_dir):
    """A user's own data: CSV or JSONL of video + caption (+ optional split).

    CSV needs a header with columns `video` and `caption` (optional `split`),
    in any case and with spaces around them, as spreadsheets write it (a
    UTF-8 byte-order mark is fine too); JSONL needs objects with `video` and
    `caption` (a string or a list of strings), optional `split` and optional
    `attributes`: what is known to be in the clip, `{name: value}` or
    `{name: [value, paraphrase, ...]}`, e.g. `{"colour": "red", "direction":
    ["up", "upwards"]}`; evaluation then reports how often captions name each
    value right. Several rows may name the same video.
    `video` is a path relative to `video_dir`. Rows without a split go to
    `test` (captioning/evaluation data).

    Args:
        path: the CSV (`.csv`) or JSONL (`.jsonl`, `.json`) file.
        video_dir: directory the `video` paths are relative to.
    """
    if not files.isfile(path):
        raise AnnotationError(f"annotation file not found: {path}")
    rows = []
    try:
        with (io.StringIO(files.read_text(path, "utf-8-sig"), newline="")
              if files.is_remote(path) else open(path, encoding="utf-8-sig", newline="")) as f:
            if path.lower().endswith(".csv"):
                reader = csv.DictReader(f, skipinitialspace=True)
                found = reader.fieldnames or []
                reader.fieldnames = [str(name).strip().lower() for name in found]
                if not {"video", "caption"} <= set(reader.fieldnames):
                    raise AnnotationError(
                        f"{path}: the CSV header must name the columns video and caption "
                        f"(optional: split); its first line is: {','.join(found)[:200]}"
                    )
                rows = list(reader)
            else:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise AnnotationError(f"{path}:{n}: not valid JSON ({e})") from None
                    if not isinstance(row, dict) or "video" not in row or "caption" not in row:
                        raise AnnotationError(f"{path}:{n}: needs keys 'video' and 'caption'")
                    rows.append(row)
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text ({e})") from None
    by_video = {}
    for n, row in enumerate(rows, 1):
        video = str(row.get("video") or "").strip()
        if not video:
            raise AnnotationError(f"{path}: row {n} has an empty 'video'")
        split = normalize_split(row.get("split") or "test", path)
        ex = by_video.setdefault(video, VideoExample(video, split, []))
        if ex.split != split:
            raise AnnotationError(
                f"{path}: video {video!r} appears in splits {ex.split} and {split}")
        caption = row.get("caption")
        ex.captions.extend(caption if isinstance(caption, list) else [caption])
        if row.get("attributes") is not None:
            ex.attributes = dict(ex.attributes or {}, **_attributes(row["attributes"], path, n))
    return finish(list(by_video.values()), video_dir)




def _attributes(value, path, row):
    """Checks an `attributes` object: names -> a string or a list of strings."""
    if not isinstance(value, dict):
        raise AnnotationError(f"{path}: row {row}: 'attributes' must be an object "
                              "{name: value or [value, paraphrase, ...]}")
    for name, given in value.items():
        items = [given] if isinstance(given, str) else given
        if not isinstance(items, list) or not items or \
                not all(isinstance(i, str) and i.strip() for i in items):
            raise AnnotationError(f"{path}: row {row}: attribute {name!r} must be a non-empty "
                                  "string or list of strings")
    return value




def load(config):
    """The examples of `config.annotations[0]`; video paths are relative to
    `config.video_dir` (default: the annotation file's directory)."""
    path = config.annotations[0]
    return load_custom(path, config.video_dir or directory_of(path))
