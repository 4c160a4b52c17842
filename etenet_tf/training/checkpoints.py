"""Training checkpoints (resume) and best-model checkpoints (by validation).

Both use `tf.train.CheckpointManager`, which writes a new numbered
checkpoint before it updates its index file and deletes old ones: a crash
or a full disk during a save leaves the previous checkpoint usable.

Layout under a stage directory (`<model_dir>/pretrain`, `.../finetune`):
    checkpoints/   model + optimizers + step + dropout seeds, every N steps
                   and after each epoch's validation
    best/          model weights with the best validation metric so far
    best/best.json {"metric", "value", "epoch", "step", "scores"}
"""

import json
import os
import shutil

import tensorflow as tf

from etenet_tf.files import write_failure_reason, write_json
from etenet_tf.training import strategy as strategy_lib


class NoCheckpointError(Exception):
    """A stage needs a checkpoint that does not exist."""


class CheckpointWriteError(Exception):
    """A checkpoint could not be written (disk full, quota, permissions)."""


def _save(manager, number, what):
    """`manager.save`, turning a failed write into a `CheckpointWriteError`
    and removing the half-written `ckpt-N_temp` directory TF leaves."""
    try:
        return manager.save(checkpoint_number=number)
    except (OSError, tf.errors.OpError) as e:
        shutil.rmtree(os.path.join(manager.directory, f"ckpt-{number}_temp"), ignore_errors=True)
        kept = manager.latest_checkpoint or "none yet"
        raise CheckpointWriteError(
            f"could not write the {what} checkpoint in {manager.directory} "
            f"({write_failure_reason(e)}); the previous one is intact ({kept}). "
            "Free disk space and re-run the same command to resume"
        ) from e


class TrainingCheckpoints:
    """The resume checkpoint and the best checkpoint of one stage.

    Args:
        stage_dir: `<model_dir>/<stage>`.
        model: the captioner.
        optimizers: dict name -> Keras optimizer (restored with the model).
        strategy: the distribution strategy (non-chief workers write to
            temp dirs that are deleted after each save).
        max_to_keep: resume checkpoints kept.
    """

    def __init__(self, stage_dir, model, optimizers, strategy, max_to_keep=2):
        self.stage_dir = stage_dir
        self.strategy = strategy
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # epochs whose validation (and best-checkpoint choice) is done: a run
        # killed between an epoch's last step and its validation redoes it
        self.validated_epochs = tf.Variable(0, dtype=tf.int64, trainable=False,
                                            name="validated_epochs")
        self.checkpoint = tf.train.Checkpoint(model=model, step=self.step,
                                              validated_epochs=self.validated_epochs,
                                              rng=seed_states(model), **optimizers)
        self.best_checkpoint = tf.train.Checkpoint(model=model)
        self._last_dir = os.path.join(stage_dir, "checkpoints")
        self._best_dir = os.path.join(stage_dir, "best")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, strategy_lib.worker_dir(self._last_dir, strategy), max_to_keep
        )
        self.best_manager = tf.train.CheckpointManager(
            self.best_checkpoint, strategy_lib.worker_dir(self._best_dir, strategy), 1
        )

    def restore_latest(self):
        """Restores the last resume checkpoint; returns its path or None."""
        latest = tf.train.latest_checkpoint(self._last_dir)
        if latest:
            self.checkpoint.restore(latest).expect_partial()
        return latest

    def save(self):
        path = _save(self.manager, int(self.step.numpy()), "resume")
        self._cleanup(self._last_dir)
        return path

    def best(self):
        """The best record (dict) or None."""
        return read_best(self.stage_dir)

    def save_best(self, record):
        _save(self.best_manager, int(self.step.numpy()), "best")
        if strategy_lib.is_chief(self.strategy):
            write_json(os.path.join(self._best_dir, "best.json"), record)
        self._cleanup(self._best_dir)

    def _cleanup(self, directory):
        if not strategy_lib.is_chief(self.strategy):
            shutil.rmtree(strategy_lib.worker_dir(directory, self.strategy), ignore_errors=True)


def seed_states(model):
    """The state variables of the model's seed generators (dropout).

    Keras keeps them in `non_trainable_variables` but `tf.train.Checkpoint`
    does not see them; saved with the resume checkpoint, a resumed run
    draws the same dropout masks as one that was never interrupted.
    """
    if not model.built:
        raise ValueError("build the model before creating its checkpoints")
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def read_best(stage_dir):
    path = os.path.join(stage_dir, "best", "best.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def restore_best(model, stage_dir):
    """Loads the best weights of a stage into `model`.

    Raises:
        NoCheckpointError: the stage has no best checkpoint.
    """
    path = tf.train.latest_checkpoint(os.path.join(stage_dir, "best"))
    if path is None or read_best(stage_dir) is None:
        raise NoCheckpointError(f"no best checkpoint in {os.path.join(stage_dir, 'best')}")
    tf.train.Checkpoint(model=model).restore(path).expect_partial()
    return path
