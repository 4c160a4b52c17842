"""Where the videos and captions come from and how they are prepared."""

import dataclasses

from etenet_tf import limits
from etenet_tf.data.sources import SOURCES
from etenet_tf.errors import UsageError
from etenet_tf.options import check, option


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Options of `prepare` and of reading its records.

    Args:
        dataset: data source (`etenet_tf.data.sources.SOURCES`).
        annotations: annotation file(s) of the source.
        video_dir: directory holding the videos (shapes: written there).
        msvd_split_dir: MSVD split lists' directory.
        msvd_mapping: MSVD `youtube_mapping.txt`.
        records_dir: where prepare writes the TFRecords.
        frames: frames sampled uniformly per video.
        image_size: frame side in pixels.
        videos_per_shard: videos per TFRecord shard.
        workers: decoding processes (0: one per CPU).
        strict: stop at the first unusable video.
        min_word_count: rarer training words become `<unk>`.
        max_caption_length: training tokens per caption (0: from the data).
        max_frame_pixels: largest frame (height x width) decoded anywhere.
        decode_timeout_s: most seconds one video may take to decode anywhere.
        shapes_train_per_combination: shapes training clips per combination.
        shapes_seed: shapes generation seed.
        scenes_seed: scenes generation seed.
        scenes_train_videos: scenes training clips.
        scenes_eval_videos: scenes validation and test clips (each).
        scenes_clutter: fraction of scenes clips with a cluttered background.
        scenes_max_objects: most objects in a scenes clip (2 or 3).
    """

    dataset: str = option("shapes", "Data source for prepare.", choices=SOURCES)
    annotations: tuple = option((), "Annotation file(s): msrvtt: the two official JSON files; "
                                "msvd: captions_msvd.json; custom: a CSV or JSONL.")
    video_dir: str = option("", "Directory holding the videos (shapes: generated there).")
    msvd_split_dir: str = option("", "MSVD: directory with train/val/test_list.txt (default: "
                                 "beside the captions file).")
    msvd_mapping: str = option("", "MSVD: youtube_mapping.txt (splits by vidN).")
    records_dir: str = option("runs/shapes/records", "Where prepare writes TFRecords.")
    frames: int = option(8, "Frames sampled uniformly per video.", low=1)
    image_size: int = option(299, "Frame side in pixels (InceptionV3 minimum: 75).", low=1)
    videos_per_shard: int = option(64, "Videos per TFRecord shard.", low=1)
    workers: int = option(0, "Decoding processes for prepare and caption (0 = one per CPU).",
                          low=0)
    strict: bool = option(False, "Stop prepare at the first missing/undecodable video.")
    min_word_count: int = option(2, "Words rarer than this in train captions -> <unk>.", low=0)
    max_caption_length: int = option(0, "Tokens per training caption incl. <start>/<end> "
                                     "(0: from prepare's dataset.json).", low=0)
    max_frame_pixels: int = option(
        limits.MAX_FRAME_PIXELS, "Most pixels (height x width) a video or JPEG frame may "
        "declare; larger ones are refused before decoding (prepare, caption, serving). Default "
        "8192x8192.", low=1)
    decode_timeout_s: float = option(
        limits.DECODE_TIMEOUT_S, "Most seconds one video may take to decode (prepare, caption, "
        "Beam); a video over it gets an error record and the others go on.", low=0,
        low_open=True)
    shapes_train_per_combination: int = option(
        5, "shapes: train clips per (colour, shape, direction).", low=1)
    shapes_seed: int = option(1234, "shapes: generation seed (another seed renders clips that "
                              "share nothing with the default ones, e.g. to test on unseen "
                              "clips).")
    scenes_seed: int = option(4321, "scenes: generation seed (another seed renders unseen "
                              "clips).", low=0)
    scenes_train_videos: int = option(600, "scenes: training clips.", low=1, high=99999)
    scenes_eval_videos: int = option(120, "scenes: validation clips and test clips (each).",
                                     low=1, high=99999)
    scenes_clutter: float = option(0.5, "scenes: fraction of clips with a cluttered background "
                                   "(texture, strong noise, grey distractor shapes).", low=0.0,
                                   high=1.0)
    scenes_max_objects: int = option(3, "scenes: most objects per clip (2 or 3).", low=2, high=3)

    def validate(self, preparing=False):
        """Raises `UsageError` for values no run can use.

        Args:
            preparing: also check what prepare needs (annotations).
        """
        check(self)
        if self.max_caption_length and self.max_caption_length < 3:
            raise UsageError("--max_caption_length must be 0 (automatic) or >= 3")
        if preparing and SOURCES[self.dataset].needs_annotations and not self.annotations:
            raise UsageError(f"--dataset={self.dataset} needs --annotations")
