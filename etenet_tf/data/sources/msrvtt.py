"""MSR-VTT v1.0: the two official annotation files."""

from etenet_tf.data.examples import (
    AnnotationError,
    VideoExample,
    finish,
    natural_key,
    normalize_split,
    read_json,
)


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
        data = read_json(path)
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
        for vid, split in sorted(videos.items(), key=lambda kv: natural_key(kv[0]))
    ]
    return finish(examples, video_dir)




def load(config):
    """The examples of `config.annotations` (both official JSON files)."""
    return load_msrvtt(config.annotations, config.video_dir)
