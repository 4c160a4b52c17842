"""A user's own data: a CSV or JSONL of video, caption (, split, attributes)."""

import csv
import io
import json
import sys

from etenet_tf import files
from etenet_tf.data.examples import (
    AnnotationError,
    VideoExample,
    check_annotation_file,
    directory_of,
    finish,
    normalize_split,
)

CSV_COLUMNS = ("video", "caption", "split")
JSONL_KEYS = ("video", "caption", "split", "attributes")


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

    Rules (docs/custom_data.md): every row needs a caption (a row without
    one is an error naming the file and line: a row is one caption of one
    video); other columns or keys, and CSV values beyond the header, are
    ignored with one warning line on stderr; a file without rows is an
    error, for CSV and JSONL alike.

    Args:
        path: the CSV (`.csv`) or JSONL (`.jsonl`, `.json`) file.
        video_dir: directory the `video` paths are relative to.
    """
    check_annotation_file(path)
    try:
        with (io.StringIO(files.read_text(path, "utf-8-sig"), newline="")
              if files.is_remote(path) else open(path, encoding="utf-8-sig", newline="")) as f:
            if path.lower().endswith(".csv"):
                rows = _csv_rows(f, path)
            else:
                rows = _jsonl_rows(f, path)
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text ({e})") from None
    if not rows:
        raise AnnotationError(
            f"{path} holds no annotation rows; it needs one row per caption: a CSV with the "
            "header video,caption[,split], or JSONL with one object {\"video\", \"caption\"} "
            "per line")
    by_video = {}
    for line, row in rows:
        video = str(row.get("video") or "").strip()
        if not video:
            raise AnnotationError(f"{path}:{line}: the row has an empty 'video'")
        caption = row.get("caption")
        texts = caption if isinstance(caption, list) else [caption]
        if not any(isinstance(t, str) and t.strip() for t in texts):
            raise AnnotationError(
                f"{path}:{line}: the row of video {video!r} has no caption; give it one or "
                "delete the row (to caption clips without references, use --stage=caption "
                "--videos=...)")
        split = normalize_split(row.get("split") or "test", path)
        ex = by_video.setdefault(video, VideoExample(video, split, []))
        if ex.split != split:
            raise AnnotationError(
                f"{path}: video {video!r} appears in splits {ex.split} and {split}")
        ex.captions.extend(texts)
        if row.get("attributes") is not None:
            ex.attributes = dict(ex.attributes or {}, **_attributes(row["attributes"], path, line))
    return finish(list(by_video.values()), video_dir)


def _csv_rows(f, path):
    """`(line number, row dict)` of a CSV with a header; warns once about
    unknown columns and values beyond the header."""
    reader = csv.DictReader(f, skipinitialspace=True)
    found = reader.fieldnames or []
    reader.fieldnames = [str(name).strip().lower() for name in found]
    if not found:
        return []
    if not {"video", "caption"} <= set(reader.fieldnames):
        raise AnnotationError(
            f"{path}: the CSV header must name the columns video and caption "
            f"(optional: split); its first line is: {','.join(found)[:200]}"
        )
    rows, beyond = [], []
    for row in reader:
        extra = row.pop(None, None)  # values beyond the header
        if extra and any(str(v).strip() for v in extra):
            beyond.append(reader.line_num)
        if any(str(v or "").strip() for v in row.values()):  # skip blank lines
            rows.append((reader.line_num, row))
    unknown = [n for n in reader.fieldnames if n not in CSV_COLUMNS]
    notes = []
    if unknown:
        notes.append(f"column(s) {', '.join(repr(n) for n in unknown)} are not used "
                     f"(known: {', '.join(CSV_COLUMNS)})")
    if beyond:
        notes.append(f"{len(beyond)} row(s) have more values than the header, first on line "
                     f"{beyond[0]}, and their extra values are ignored (a caption holding a "
                     "comma needs double quotes)")
    if notes:
        _warn(f"{path}: {'; '.join(notes)}")
    return rows


def _jsonl_rows(f, path):
    """`(line number, object)` of a JSONL file; warns once about unknown keys."""
    rows, unknown = [], {}
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{path}:{n}: not valid JSON ({e})") from None
        if not isinstance(row, dict) or "video" not in row or "caption" not in row:
            raise AnnotationError(f"{path}:{n}: needs keys 'video' and 'caption'")
        for key in row:
            if key not in JSONL_KEYS:
                unknown.setdefault(key, n)
        rows.append((n, row))
    if unknown:
        first = min(unknown.values())
        _warn(f"{path}: key(s) {', '.join(repr(k) for k in unknown)} are not used (known: "
              f"{', '.join(JSONL_KEYS)}), first on line {first}")
    return rows


def _warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _attributes(value, path, line):
    """Checks an `attributes` object: names -> a string or a list of strings."""
    if not isinstance(value, dict):
        raise AnnotationError(f"{path}:{line}: 'attributes' must be an object "
                              "{name: value or [value, paraphrase, ...]}")
    for name, given in value.items():
        items = [given] if isinstance(given, str) else given
        if not isinstance(items, list) or not items or \
                not all(isinstance(i, str) and i.strip() for i in items):
            raise AnnotationError(f"{path}:{line}: attribute {name!r} must be a non-empty "
                                  "string or list of strings")
    return value




def load(config):
    """The examples of `config.annotations[0]`; video paths are relative to
    `config.video_dir` (default: the annotation file's directory)."""
    path = config.annotations[0]
    return load_custom(path, config.video_dir or directory_of(path))
