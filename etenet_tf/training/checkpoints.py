"""Training checkpoints (resume) and best-model checkpoints (by validation).

Both use `tf.train.CheckpointManager`, which writes a new numbered
checkpoint before it updates its index file and deletes old ones: a crash
or a full disk during a save leaves the previous checkpoint usable.

Layout under a stage directory (`<model_dir>/<stage>`, see `run_dir`):
    checkpoints/   model + optimizers + step + dropout seeds (+ gradient
                   accumulators), every N steps and after each epoch's
                   validation
    best/          model weights with the best validation metric so far
    best/best.json {"metric", "value", "epoch", "step", "scores"}

Damage on disk: a checkpoint is read through (every tensor's checksum)
before it is restored. If the newest resume checkpoint is damaged (flipped
bytes, a missing, truncated or overwritten data or index file: anything
`run_dir.unreadable_reason` cannot read), a warning names it, its files are renamed
`*.corrupt`, and the newest intact one is used. An unreadable `checkpoint`
state file is rebuilt from the `ckpt-N.index` files present. A damaged
`best/` is an error that says what to do: it is the only copy of the best
weights.
"""

import contextlib
import glob
import os
import shutil
import sys

import tensorflow as tf

from etenet_tf.errors import UserError
from etenet_tf.files import write_failure_advice, write_failure_reason, write_json, write_text
from etenet_tf.run_dir import (
    CorruptCheckpointError,
    ModelDirError,
    checkpoint_paths,
    unreadable_reason,
)
from etenet_tf.training import strategy as strategy_lib


class CheckpointWriteError(UserError):
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
            f"{write_failure_advice(e, manager.directory)} and re-run the same command to resume"
        ) from e


def _state_is_readable(directory):
    if not os.path.exists(os.path.join(directory, "checkpoint")):
        return True
    try:
        return tf.train.get_checkpoint_state(directory) is not None
    except (ValueError, tf.errors.OpError):
        return False


def repair_state(directory, warn=True):
    """Rewrites an unreadable `checkpoint` state file of `directory` from
    the checkpoint files present (so `CheckpointManager` can open it)."""
    if _state_is_readable(directory):
        return
    paths = checkpoint_paths(directory)
    if warn:
        print(f"warning: {os.path.join(directory, 'checkpoint')} is unreadable; rebuilt it from "
              f"the {len(paths)} checkpoint(s) present", file=sys.stderr, flush=True)
    os.remove(os.path.join(directory, "checkpoint"))
    write_state(directory)


def write_state(directory):
    """Writes the `checkpoint` state file listing the checkpoints present,
    oldest first, with their file times (the manager deletes the ones
    beyond `max_to_keep` by them)."""
    paths = list(reversed(checkpoint_paths(directory)))
    if paths:  # the text format of TF's CheckpointState proto, relative paths
        names = [os.path.basename(p) for p in paths]
        write_text(os.path.join(directory, "checkpoint"), "".join(
            [f'model_checkpoint_path: "{names[-1]}"\n']
            + [f'all_model_checkpoint_paths: "{n}"\n' for n in names]
            + [f"all_model_checkpoint_timestamps: {os.path.getmtime(p + '.index')}\n"
               for p in paths]))


def _set_aside(path):
    """Renames the files of a damaged checkpoint to `*.corrupt` (kept for a
    post-mortem, never picked again, never deleted by the manager)."""
    for name in glob.glob(glob.escape(path) + ".*"):
        if not name.endswith(".corrupt"):
            os.replace(name, name + ".corrupt")


def remove_temp_dirs(directory):
    """Removes `ckpt-N_temp` directories that a killed save left behind."""
    for temp in glob.glob(os.path.join(directory, "ckpt-*_temp")):
        shutil.rmtree(temp, ignore_errors=True)


class TrainingCheckpoints:
    """The resume checkpoint and the best checkpoint of one stage.

    Args:
        run: the `RunDir`.
        stage: the training stage's name.
        model: the captioner.
        optimizers: dict name -> Keras optimizer, or other training state
            (gradient accumulators), restored with the model.
        strategy: the distribution strategy (non-chief workers write to
            temp dirs that are deleted after each save).
        max_to_keep: resume checkpoints kept.
    """

    def __init__(self, run, stage, model, optimizers, strategy, max_to_keep=2):
        self.run = run
        self.stage = stage
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
        self._last_dir = run.checkpoints_dir(stage)
        self._best_dir = run.best_dir(stage)
        self._max_to_keep = max_to_keep
        if strategy_lib.is_chief(strategy):
            for directory in (self._last_dir, self._best_dir):
                remove_temp_dirs(directory)
                repair_state(directory)
            run.check_best(stage)
        self._make_managers()

    def _make_managers(self):
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, strategy_lib.worker_dir(self._last_dir, self.strategy),
            self._max_to_keep
        )
        self.best_manager = tf.train.CheckpointManager(
            self.best_checkpoint, strategy_lib.worker_dir(self._best_dir, self.strategy), 1
        )

    def restore_latest(self):
        """Restores the newest intact resume checkpoint; returns its path or None.

        Damaged newer ones are reported on stderr (one line each) and their
        files renamed `*.corrupt`.

        Raises:
            CorruptCheckpointError: checkpoints exist but none is intact.
        """
        paths = checkpoint_paths(self._last_dir)
        damaged = []
        for path in paths:
            reason = unreadable_reason(path)
            if reason is None:
                self._restore(path)
                break
            damaged.append((path, reason))
        else:
            path = None
        if damaged and strategy_lib.is_chief(self.strategy):
            for bad, reason in damaged:
                print(f"warning: checkpoint {bad} is damaged ({reason}); "
                      f"{'resuming from ' + path if path else 'no intact checkpoint is left'} "
                      f"(its files are renamed *.corrupt)", file=sys.stderr, flush=True)
                _set_aside(bad)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self._last_dir, "checkpoint"))
            write_state(self._last_dir)
            self._make_managers()
        if damaged and path is None:
            raise CorruptCheckpointError(
                f"every resume checkpoint in {self._last_dir} is damaged (the newest: "
                f"{damaged[0][1]}); delete {self._last_dir} to train --stage="
                f"{self.stage} again from the start")
        return path

    def _restore(self, path):
        try:
            self.checkpoint.restore(path).expect_partial()
        except ValueError as e:  # variables of another shape or kind
            raise ModelDirError(
                f"the resume checkpoint {path} was written with other training options "
                f"({str(e).splitlines()[0][:200]}); re-run with the flags it was started with "
                f"(e.g. --lr_schedule, --finetune_blocks), or delete {self._last_dir} to train "
                f"--stage={self.stage} again from the start") from None

    def save(self):
        path = _save(self.manager, int(self.step.numpy()), "resume")
        self._cleanup(self._last_dir)
        return path

    def best(self):
        """The best record (dict) or None."""
        return self.run.read_best(self.stage)

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
