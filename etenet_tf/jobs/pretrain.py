"""`--stage=pretrain`: encoder frozen, the decoder learns on cached features."""

from etenet_tf.run_dir import RunDir
from etenet_tf.training import stages


def run(config):
    """Returns the best record (`best.json`)."""
    config.training.validate()  # (the model options are checked against the records)
    return stages.pretrain(RunDir(config.model_dir), config.data, config.model, config.training)
