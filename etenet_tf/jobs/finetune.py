"""`--stage=finetune`: the whole network end to end from the best pretrain weights."""

from etenet_tf.export import package
from etenet_tf.run_dir import RunDir
from etenet_tf.training import stages


def run(config):
    """Returns the best record (`best.json`)."""
    config.training.validate()
    if config.source.model:  # start from a package: it becomes the pretrain weights
        package.seed_model_dir(package.resolve(config.source.model), config.model_dir)
    return stages.finetune(RunDir(config.model_dir), config.data, config.training)
