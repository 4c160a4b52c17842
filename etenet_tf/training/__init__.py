"""Training: the stages, the custom strategy.run loop, objectives, checkpoints."""

from etenet_tf.training.checkpoints import CheckpointWriteError, TrainingCheckpoints
from etenet_tf.training.config import TrainingConfig
from etenet_tf.training.loop import Trainer, TrainingDivergedError, TrainingInputError
from etenet_tf.training.objectives import Objective, TeacherForcing
from etenet_tf.training.stages import (
    STAGES,
    StageSpec,
    finetune,
    load_prepared,
    pretrain,
    register_stage,
    run_stage,
    scst,
)
from etenet_tf.training.strategy import STRATEGIES, make_strategy

__all__ = ["STAGES", "STRATEGIES", "CheckpointWriteError", "Objective", "StageSpec",
           "TeacherForcing", "Trainer", "TrainingCheckpoints", "TrainingConfig",
           "TrainingDivergedError", "TrainingInputError", "finetune", "load_prepared",
           "make_strategy", "pretrain", "register_stage", "run_stage", "scst"]
