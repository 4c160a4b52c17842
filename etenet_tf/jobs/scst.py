"""`--stage=scst`: self-critical sequence training on CIDEr-D."""

from etenet_tf.run_dir import RunDir
from etenet_tf.training import stages


def run(config):
    """Returns the best record (`best.json`)."""
    config.training.validate()
    return stages.scst(RunDir(config.model_dir), config.data, config.training)
