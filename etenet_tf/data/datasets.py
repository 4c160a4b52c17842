"""Dataset adapters: annotation files -> a list of `VideoExample`.

Every adapter returns the same thing, so `prepare` does not care where the
annotations came from. Split names are normalised to `train`, `val`, `test`.

Video ids come from files a user downloaded; they must never name a file
outside `--video_dir`. Absolute ids and ids that resolve outside it are
rejected (reported as `unsafe_id`, fatal with `--strict`).
"""

import csv
import dataclasses
import json
import os

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


class AnnotationError(Exception):
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
    """

    video_id: str
    split: str
    captions: list
    path: str = None
    problem: str = None
    attributes: dict = None


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
        self._root = os.path.realpath(video_dir) if video_dir else None
        self._by_stem = {}
        if self._root and os.path.isdir(self._root):
            for name in sorted(os.listdir(self._root)):
                stem, ext = os.path.splitext(name)
                if ext.lower() not in VIDEO_EXTENSIONS:
                    continue
                path = os.path.join(self._root, name)
                self._by_stem.setdefault(stem, path)
                # every '_'-separated suffix, for prefixed file names
                parts = stem.split("_")
                for i in range(1, len(parts)):
                    self._by_stem.setdefault("_".join(parts[i:]), path)

    def is_safe(self, video_id):
        """True if `video_id` stays inside `video_dir`."""
        if not video_id or os.path.isabs(video_id) or "\x00" in video_id:
            return False
        if video_id.startswith(("~", "\\")) or ":" in video_id.split("/")[0]:
            return False
        root = self._root or os.path.realpath(".")
        target = os.path.realpath(os.path.join(root, video_id))
        return target == root or target.startswith(root + os.sep)

    def resolve(self, video_id):
        """Returns `(path or None, problem or None)` for a video id."""
        if not self.is_safe(video_id):
            return None, "unsafe_id"
        if self._root is None:
            return None, "missing"
        direct = os.path.join(self._root, video_id)
        if os.path.isfile(direct):
            return os.path.realpath(direct), None
        path = self._by_stem.get(video_id)
        if path is None:
            return None, "missing"
        return path, None


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise AnnotationError(f"annotation file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from None


def _clean_captions(captions):
    """Drops empty and non-string captions; keeps order."""
    return [c.strip() for c in captions if isinstance(c, str) and c.strip()]


def _finish(examples, video_dir):
    """Resolves paths; training videos without a usable caption are marked.

    Validation and test videos may have no reference (a user's own clips to
    caption); they are kept and simply not scored.
    """
    index = VideoIndex(video_dir)
    out = []
    for ex in examples:
        ex.captions = _clean_captions(ex.captions)
        if not ex.captions and ex.split == "train":
            ex.problem = "no_captions"
        else:
            ex.path, ex.problem = index.resolve(ex.video_id)
        out.append(ex)
    return out


def load_msrvtt(annotation_paths, video_dir):
    """MSR-VTT v1.0: `train_val_videodatainfo.json` + `test_videodatainfo.json`.

    Splits come from each video's `split` field: train 6513, validate 497
    (-> `val`), test 2990.

    Args:
        annotation_paths: list of the official JSON files.
        video_dir: directory holding `videoN.mp4` files.
    """
    if not annotation_paths:
        raise AnnotationError(
            "--dataset=msrvtt needs --annotations=train_val_videodatainfo.json,"
            "test_videodatainfo.json"
        )
    videos = {}
    captions = {}
    for path in annotation_paths:
        data = _read_json(path)
        if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
            raise AnnotationError(
                f"{path}: not an MSR-VTT annotation file (needs 'videos' and 'sentences')"
            )
        for v in data["videos"]:
            try:
                videos[str(v["video_id"])] = normalize_split(v["split"], path)
            except (KeyError, TypeError):
                raise AnnotationError(
                    f"{path}: a video entry lacks 'video_id' or 'split': {v!r:.200}"
                ) from None
        for s in data["sentences"]:
            try:
                captions.setdefault(str(s["video_id"]), []).append(s["caption"])
            except (KeyError, TypeError):
                raise AnnotationError(
                    f"{path}: a sentence entry lacks 'video_id' or 'caption': {s!r:.200}"
                ) from None
    examples = [
        VideoExample(vid, split, captions.get(vid, []))
        for vid, split in sorted(videos.items(), key=lambda kv: _natural_key(kv[0]))
    ]
    return _finish(examples, video_dir)


def load_msvd(captions_path, video_dir, split_dir=None, mapping_path=None):
    """MSVD: `captions_msvd.json` ({clip: [captions]}) plus a split source.

    Splits come from `train_list.txt` / `val_list.txt` / `test_list.txt` in
    `split_dir` when present, else from `youtube_mapping.txt`
    (vid1-1200 train, vid1201-1300 val, vid1301-1970 test). Video files may
    be named by clip name (`-4wsuPCjDBc_5_15.avi`) or by `vidN`.

    Args:
        captions_path: the captions JSON.
        video_dir: directory holding the clips.
        split_dir: directory with the three split lists (optional).
        mapping_path: `youtube_mapping.txt` (optional).
    """
    data = _read_json(captions_path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{captions_path}: expected an object {{clip: [captions]}}")
    split_of = {}
    lists = [os.path.join(split_dir, f"{s}_list.txt") for s in SPLITS] if split_dir else []
    if lists and all(os.path.isfile(p) for p in lists):
        for split, p in zip(SPLITS, lists):
            with open(p, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        split_of[line.strip()] = split
    aliases = {}
    if mapping_path:
        if not os.path.isfile(mapping_path):
            raise AnnotationError(f"MSVD mapping file not found: {mapping_path}")
        with open(mapping_path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) != 2 or not parts[1].startswith("vid"):
                    continue
                clip, vid = parts
                aliases[clip] = vid
                if not split_of or clip not in split_of:
                    n = int(vid[3:])
                    split_of.setdefault(
                        clip, "train" if n <= 1200 else "val" if n <= 1300 else "test"
                    )
    if not split_of:
        raise AnnotationError(
            "--dataset=msvd needs split lists (train_list.txt, val_list.txt, "
            "test_list.txt) beside the captions or --msvd_mapping=youtube_mapping.txt"
        )
    examples = []
    for clip in sorted(data):
        if clip not in split_of:
            continue
        caps = data[clip]
        if not isinstance(caps, list):
            raise AnnotationError(f"{captions_path}: captions of {clip!r} are not a list")
        examples.append(VideoExample(clip, split_of[clip], caps))
    examples = _finish(examples, video_dir)
    index = VideoIndex(video_dir)
    for ex in examples:  # second chance: files named vidN
        if ex.problem == "missing" and ex.video_id in aliases:
            path, problem = index.resolve(aliases[ex.video_id])
            if path:
                ex.path, ex.problem = path, problem
    return examples


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
    if not os.path.isfile(path):
        raise AnnotationError(f"annotation file not found: {path}")
    rows = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
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
            raise AnnotationError(f"{path}: video {video!r} appears in splits {ex.split} and {split}")
        caption = row.get("caption")
        ex.captions.extend(caption if isinstance(caption, list) else [caption])
        if row.get("attributes") is not None:
            ex.attributes = dict(ex.attributes or {}, **_attributes(row["attributes"], path, n))
    return _finish(list(by_video.values()), video_dir)


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


def _natural_key(text):
    digits = "".join(c for c in text if c.isdigit())
    return (text.rstrip("0123456789"), int(digits) if digits else -1, text)
