"""MSVD: `captions_msvd.json` plus split lists or `youtube_mapping.txt`."""

import os

from etenet_tf import files
from etenet_tf.data.examples import (
    SPLITS,
    AnnotationError,
    VideoExample,
    VideoIndex,
    check_annotation_file,
    directory_of,
    finish,
    read_json,
)


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
    data = read_json(captions_path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{captions_path}: expected an object {{clip: [captions]}}")
    split_of = {}
    lists = [os.path.join(split_dir, f"{s}_list.txt") for s in SPLITS] if split_dir else []
    if lists and all(files.isfile(p) for p in lists):
        for split, p in zip(SPLITS, lists):
            for line in files.read_text(p).splitlines():
                if line.strip():
                    split_of[line.strip()] = split
    aliases = {}
    if mapping_path:
        check_annotation_file(mapping_path, "MSVD mapping file")
        for line in files.read_text(mapping_path).splitlines():
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
    examples = finish(examples, video_dir)
    index = VideoIndex(video_dir)
    for ex in examples:  # second chance: files named vidN
        if ex.problem == "missing" and ex.video_id in aliases:
            path, problem = index.resolve(aliases[ex.video_id])
            if path:
                ex.path, ex.problem = path, problem
    return examples




def load(config):
    """The examples of `config.annotations[0]` with the split lists beside it
    (or in `config.msvd_split_dir`) or `config.msvd_mapping`."""
    captions = config.annotations[0]
    split_dir = config.msvd_split_dir or directory_of(captions)
    return load_msvd(captions, config.video_dir or None, split_dir, config.msvd_mapping or None)
