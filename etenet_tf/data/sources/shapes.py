"""The embedded `shapes` dataset, generated on the spot (`etenet_tf.data.shapes`)."""

from etenet_tf.data import shapes
from etenet_tf.data.sources.generated import load_generated


def load(config):
    """Generates the clips (once, `--shapes_*`) and returns their examples."""
    return load_generated(config, "shapes", lambda out, video_dir: shapes.generate(
        out, (config.shapes_train_per_combination, 1, 1), video_dir=video_dir,
        seed=config.shapes_seed))
