"""The model directory (`--model_dir`): its layout, and reading what
training wrote into it.

    <model_dir>/
        model_config.json   the captioner's `ModelConfig`
        vocab.txt           its vocabulary
        input_spec.json     frames per clip and frame size of the training data
        features/           pretrain's feature cache
        <stage>/            one per training stage (pretrain, finetune, scst)
            config.json     the stage's whole resolved configuration (what it
                            started from, learning rates, epochs, all flags)
            checkpoints/    resume checkpoints (model, optimizers, step, seeds)
            best/           the best checkpoint by validation, and best.json
            logs/           TensorBoard events (train/, validation/)
            .lock           held while the stage runs
        evaluation/         predictions and scores of `evaluate` (each scores
                            JSON names the stage config.json it came from)

Every stage after the first rebuilds exactly the model pretrain built from
`model_config.json` and `vocab.txt`. A damaged `best/` is an error that
says what to do: it is the only copy of the best weights.
"""

import glob
import json
import os
import re

import tensorflow as tf

from etenet_tf import files
from etenet_tf.errors import UsageError, UserError
from etenet_tf.files import write_json
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.text import vocabulary as vocab_lib


class NoCheckpointError(UsageError):
    """A stage needs a checkpoint (or model) that does not exist yet."""


class CorruptCheckpointError(UserError):
    """A checkpoint that must be used is damaged; the message says what to do."""


class ModelDirError(UserError):
    """The model directory holds something incompatible."""


def checkpoint_paths(directory):
    """Checkpoint prefixes in `directory` (`.../ckpt-N` with an index file),
    newest (highest N) first. Does not need the `checkpoint` state file."""
    numbered = []
    for index in glob.glob(os.path.join(directory, "ckpt-*.index")):
        match = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(index))
        if match:
            numbered.append((int(match.group(1)), index[: -len(".index")]))
    return [path for _, path in sorted(numbered, reverse=True)]


def unreadable_reason(path):
    """None if every tensor of checkpoint `path` reads back with a matching
    checksum, else the reason (one line).

    Any failure to read counts as damage: a short read of a truncated data
    file (TF raises `IndexError` for it), a truncated or overwritten index
    file (bad magic number), a missing file, or a tensor that does not match
    its checksum, dtype or shape. Only interrupts (`KeyboardInterrupt`,
    `SystemExit`) and `MemoryError` go through.
    """
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - every way a checkpoint fails to read is damage
        message = (getattr(e, "message", None) or str(e)).strip()
        first = message.splitlines()[0][:300] if message else type(e).__name__
        if isinstance(e, IndexError):  # TF's short read of a file cut short
            return f"a file of it is truncated: {first}"
        return first
    return None


class RunDir:
    """One `--model_dir`.

    Args:
        path: the directory (it need not exist yet).
    """

    MODEL_CONFIG = "model_config.json"
    VOCABULARY = "vocab.txt"
    INPUT_SPEC = "input_spec.json"

    def __init__(self, path):
        self.path = path

    # -- layout --------------------------------------------------------------

    @property
    def features_dir(self):
        return os.path.join(self.path, "features")

    @property
    def evaluation_dir(self):
        return os.path.join(self.path, "evaluation")

    def stage_dir(self, stage):
        return os.path.join(self.path, stage)

    def checkpoints_dir(self, stage):
        return os.path.join(self.path, stage, "checkpoints")

    def best_dir(self, stage):
        return os.path.join(self.path, stage, "best")

    def logs_dir(self, stage):
        return os.path.join(self.path, stage, "logs")

    # -- the model -----------------------------------------------------------

    def _read_json(self, name):
        path = os.path.join(self.path, name)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise files.WriteTargetError(
                f"--model_dir={self.path} is a file, not a model directory")
        if not os.path.isfile(path):
            raise NoCheckpointError(
                f"{path} not found: run --stage=pretrain with --model_dir={self.path} first")
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def read_model_config(self):
        """The `ModelConfig` stored by pretrain."""
        values = self._read_json(self.MODEL_CONFIG)
        try:
            return ModelConfig.from_dict(values)
        except (TypeError, ValueError) as e:
            raise ModelDirError(
                f"{os.path.join(self.path, self.MODEL_CONFIG)} is not a model config of this "
                f"version ({e}); train into a new --model_dir") from None

    def read_vocabulary(self):
        """The vocabulary the model was trained with."""
        return vocab_lib.Vocabulary.load(os.path.join(self.path, self.VOCABULARY))

    def read_input_spec(self):
        """`{"num_frames", "image_size"}` of the training data."""
        return self._read_json(self.INPUT_SPEC)

    def check_compatible(self, config, vocabulary):
        """Raises `ModelDirError` if the directory already holds another model."""
        if not os.path.isfile(os.path.join(self.path, self.MODEL_CONFIG)):
            return
        stored = self.read_model_config().to_dict()
        diff = sorted(k for k, v in config.to_dict().items() if stored.get(k) != v)
        if os.path.isfile(os.path.join(self.path, self.VOCABULARY)) and \
                self.read_vocabulary().tokens != vocabulary.tokens:
            diff.append("vocabulary")
        if diff:
            raise ModelDirError(
                f"{self.path} holds a model with different {', '.join(diff)}; use a new "
                "--model_dir or the flags it was trained with")

    def write_model(self, config, vocabulary):
        """Records the model (once) and the training data's input spec."""
        os.makedirs(self.path, exist_ok=True)
        if not os.path.isfile(os.path.join(self.path, self.MODEL_CONFIG)):
            vocabulary.save(os.path.join(self.path, self.VOCABULARY))
            write_json(os.path.join(self.path, self.MODEL_CONFIG), config.to_dict())
        write_json(os.path.join(self.path, self.INPUT_SPEC),
                   {"num_frames": config.num_frames, "image_size": config.image_size})

    # -- best checkpoints ----------------------------------------------------

    def _damaged_best(self, stage, reason):
        best_dir, stage_dir = self.best_dir(stage), self.stage_dir(stage)
        return CorruptCheckpointError(
            f"the best {stage} checkpoint in {best_dir} is damaged ({reason}). It is the only "
            f"copy of the best {stage} weights: restore {best_dir} from a backup, or delete "
            f"{stage_dir} and re-run --stage={stage} to train that stage again")

    def read_best(self, stage):
        """The best record of a stage (dict), or None if it has none.

        Raises:
            CorruptCheckpointError: `best.json` is unreadable.
        """
        path = os.path.join(self.best_dir(stage), "best.json")
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            if not isinstance(record, dict) or "value" not in record:
                raise ValueError("not a best record")
        except (OSError, ValueError) as e:
            raise self._damaged_best(stage, f"{path}: {e}") from None
        return record

    def _best_path(self, stage):
        """The best checkpoint's prefix, or None when there is no best record.

        Raises:
            CorruptCheckpointError: `best.json` exists but the checkpoint is
                missing or unreadable.
        """
        record = self.read_best(stage)
        if record is None:
            return None
        # the checkpoint number is the step best.json names
        path = os.path.join(self.best_dir(stage), f"ckpt-{record.get('step')}")
        if not os.path.exists(path + ".index"):
            paths = checkpoint_paths(self.best_dir(stage))
            if not paths:
                raise self._damaged_best(stage, "best.json is there but no checkpoint files")
            path = paths[0]
        reason = unreadable_reason(path)
        if reason:
            raise self._damaged_best(stage, reason)
        return path

    def check_best(self, stage):
        """Raises `CorruptCheckpointError` if the stage's best checkpoint
        exists but is damaged (a stage checks it before training on)."""
        self._best_path(stage)

    def restore_best(self, model, stage):
        """Loads the best weights of a stage into `model`; returns the path.

        Raises:
            NoCheckpointError: the stage has no best checkpoint.
            CorruptCheckpointError: it has one, but it is damaged.
        """
        path = self._best_path(stage)
        if path is None:
            raise NoCheckpointError(f"no best {stage} checkpoint in {self.best_dir(stage)}: run "
                                    f"--stage={stage} with --model_dir={self.path} first")
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
        return path

    def trained_stages(self, stages):
        """Those of `stages` (in their order) that have a best checkpoint."""
        return [s for s in stages if self.read_best(s) is not None]

    def build_model(self, encoder_weights=None):
        """The stored model, freshly initialised (call under a strategy scope)."""
        return build_captioner(self.read_model_config(), self.read_vocabulary().tokens,
                               encoder_weights)

    def load_trained_model(self, stage):
        """The stored model with a stage's best weights."""
        model = self.build_model()
        self.restore_best(model, stage)
        return model
