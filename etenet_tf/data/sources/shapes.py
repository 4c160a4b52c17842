"""The embedded `shapes` dataset, generated on the spot (`etenet_tf.data.shapes`)."""

import os

from etenet_tf import files
from etenet_tf.data import shapes
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.errors import UsageError


def load(config):
    """Generates the clips (once) and returns their examples.

    Clips and `annotations.jsonl` go to `config.video_dir`, or to `shapes/`
    beside `config.records_dir`.
    """
    if files.is_remote(config.video_dir):
        raise UsageError(f"--dataset=shapes renders its clips with PyAV into a local "
                         f"directory, not --video_dir={config.video_dir}")
    if not config.video_dir and files.is_remote(config.records_dir):
        raise UsageError("--dataset=shapes with a remote --records_dir needs a local "
                         "--video_dir to render its clips into")
    if config.video_dir:
        out = video_dir = config.video_dir
        files.ensure_directory(video_dir, "video_dir")
    else:
        out = os.path.join(os.path.dirname(os.path.abspath(config.records_dir)), "shapes")
        video_dir = os.path.join(out, "videos")
    annotations = shapes.generate(out, (config.shapes_train_per_combination, 1, 1),
                                  video_dir=video_dir, seed=config.shapes_seed)
    return load_custom(annotations, video_dir)
