"""The embedded `scenes` dataset, generated on the spot (`etenet_tf.data.scenes`)."""

from etenet_tf.data import scenes
from etenet_tf.data.sources.generated import load_generated


def load(config):
    """Generates the clips (once, `--scenes_*`) and returns their examples."""
    return load_generated(config, "scenes", lambda out, video_dir: scenes.generate(
        out, (config.scenes_train_videos, config.scenes_eval_videos, config.scenes_eval_videos),
        seed=config.scenes_seed, clutter=config.scenes_clutter,
        max_objects=config.scenes_max_objects, video_dir=video_dir))
