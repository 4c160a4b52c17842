"""The embedded `scenes` dataset, generated on the spot (`etenet_tf.data.scenes`)."""

import os

from etenet_tf import files
from etenet_tf.data import scenes
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.errors import UsageError


def load(config):
    """Generates the clips (once) and returns their examples.

    Clips and `annotations.jsonl` go to `config.video_dir`, or to `scenes/`
    beside `config.records_dir`.
    """
    if files.is_remote(config.video_dir):
        raise UsageError(f"--dataset=scenes renders its clips with PyAV into a local "
                         f"directory, not --video_dir={config.video_dir}")
    if not config.video_dir and files.is_remote(config.records_dir):
        raise UsageError("--dataset=scenes with a remote --records_dir needs a local "
                         "--video_dir to render its clips into")
    if config.video_dir:
        out = video_dir = config.video_dir
        files.ensure_directory(video_dir, "video_dir")
    else:
        out = os.path.join(os.path.dirname(os.path.abspath(config.records_dir)), "scenes")
        video_dir = os.path.join(out, "videos")
    annotations = scenes.generate(
        out, (config.scenes_train_videos, config.scenes_eval_videos, config.scenes_eval_videos),
        seed=config.scenes_seed, clutter=config.scenes_clutter,
        max_objects=config.scenes_max_objects, video_dir=video_dir)
    return load_custom(annotations, video_dir)
