"""`--stage=<training stage>`: one job for every registered `StageSpec`
(pretrain, finetune, scst, ...; `etenet_tf.training.stages`)."""

from etenet_tf.jobs import model_flags
from etenet_tf.run_dir import RunDir
from etenet_tf.training import stages


def run(config):
    """Runs the training stage `config.stage`; returns its best record
    (`best.json`)."""
    config.training.validate()  # (the model options are checked against the records)
    run_dir = RunDir(config.model_dir)
    # a stage that resumes into (or starts from) a stored model trains that
    # model: the flags were compared with it before (`model_flags`)
    model = model_flags.stored_model(run_dir) or config.model
    return stages.run_stage(config.stage, run_dir, config.data, model, config.training,
                            flags=config.to_flat())
