"""What the generated datasets (`shapes`, `scenes`) share: where their clips
are rendered, and their examples read back like a custom JSONL."""

import os

from etenet_tf import files
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.errors import UsageError


def load_generated(config, name, generate):
    """Renders the clips of dataset `name` (once) and returns their examples.

    Clips and `annotations.jsonl` go to `config.video_dir`, or to `<name>/`
    beside `config.records_dir`. `generate(out, video_dir)` writes them and
    returns the path of `annotations.jsonl`.
    """
    if files.is_remote(config.video_dir):
        raise UsageError(f"--dataset={name} renders its clips with PyAV into a local "
                         f"directory, not --video_dir={config.video_dir}")
    if not config.video_dir and files.is_remote(config.records_dir):
        raise UsageError(f"--dataset={name} with a remote --records_dir needs a local "
                         "--video_dir to render its clips into")
    if config.video_dir:
        out = video_dir = config.video_dir
        files.ensure_directory(video_dir, "video_dir")
    else:
        out = os.path.join(os.path.dirname(os.path.abspath(config.records_dir)), name)
        video_dir = os.path.join(out, "videos")
    return load_custom(generate(out, video_dir), video_dir)
