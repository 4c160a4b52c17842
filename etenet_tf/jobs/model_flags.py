"""Model flags against the stored model: a flag the user set that the stage
would silently ignore is refused instead.

A stage that starts from a stored model (finetune, scst, evaluate, caption,
export, and pretrain resuming into a model directory that holds one) uses
`<model_dir>/model_config.json`, whatever the model flags say, and the
frame count and size the records were prepared with, whatever `--frames`
and `--image_size` say. So before such a stage writes anything, every
model flag the user gave (on the command line or in a flagfile:
`ExperimentConfig.explicit_flags`) is compared with the stored model, and
`--frames` / `--image_size` with the stored model or, when there is none
yet, with the records. Any difference is one `ModelFlagsError` (exit 2)
naming each flag, both values and the fix. Flags left at their defaults
are not differences. The comparison runs over every flag field of
`ModelConfig`, so a new model option is covered without a change here.
"""

import json
import os

from etenet_tf.data import prepare as prepare_lib
from etenet_tf.errors import UsageError
from etenet_tf.model.config import ModelConfig
from etenet_tf.options import flag_fields

# the data flags whose values a stored model or the records fix: flag ->
# (the ModelConfig field, the dataset.json key)
DATA_FLAGS = {"frames": ("num_frames", "num_frames"),
              "image_size": ("image_size", "image_size")}


class ModelFlagsError(UsageError):
    """Flags the user gave differ from the stored model or the records."""


def given_flags(config):
    """The flags the user set: `config.explicit_flags` (the command line
    and its flagfiles), or, for a config built in Python, those whose value
    is not the default."""
    if config.explicit_flags is not None:
        return set(config.explicit_flags)
    default = type(config)().to_flat()
    return {name for name, value in config.to_flat().items() if value != default[name]}


def stored_model(run_dir):
    """The `ModelConfig` in `run_dir`, or None when it holds none yet."""
    if not os.path.isfile(os.path.join(run_dir.path, run_dir.MODEL_CONFIG)):
        return None
    return run_dir.read_model_config()


def _records_info(records_dir):
    """`dataset.json` of `records_dir`, or None (missing or unreadable: the
    stage itself reports that)."""
    path = os.path.join(records_dir, prepare_lib.DATASET_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _shown(value):
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def differences(config, run_dir, *, records=False):
    """What the given flags would change: `(model, data)`, lists of
    `(flag, given value, stored value)` against the stored model, and of
    `--frames` / `--image_size` against the records (`records`: the stage
    reads `--records_dir`; compared only when no model is stored)."""
    given = given_flags(config)
    stored = stored_model(run_dir)
    model = []
    if stored is not None:
        for field in flag_fields(ModelConfig):
            ours, theirs = getattr(config.model, field.name), getattr(stored, field.name)
            if field.name in given and ours != theirs:
                model.append((field.name, ours, theirs))
    data = []
    info = _records_info(config.data.records_dir) if records and stored is None else None
    for flag, (model_key, info_key) in DATA_FLAGS.items():
        if flag not in given:
            continue
        ours = getattr(config.data, flag)
        if stored is not None and ours != getattr(stored, model_key):
            model.append((flag, ours, getattr(stored, model_key)))
        elif info is not None and info_key in info and ours != info[info_key]:
            data.append((flag, ours, info[info_key]))
    return model, data


def _refusal(rows, label, source, fix):
    """One clause: each `(flag, given, stored)` of `rows`, where the stored
    values come from (`source`) and the fix."""
    one = len(rows) == 1
    listed = ", ".join(f"--{n}={_shown(ours)} ({label}: {_shown(theirs)})"
                       for n, ours, theirs in rows)
    return (f"{listed} differ{'s' if one else ''} from the {source}: drop "
            f"{'the flag' if one else 'those flags'}, or {fix}")


def check(config, run_dir, *, records=False):
    """Raises `ModelFlagsError` when a flag the user gave differs from the
    stored model (or, with `records` and no stored model, `--frames` /
    `--image_size` from the records); see `differences`."""
    model, data = differences(config, run_dir, records=records)
    parts = []
    if model:
        parts.append(_refusal(
            model, "stored", f"model in --model_dir={run_dir.path}, which this stage uses as "
            "it is", "train a model with them in a new --model_dir"))
    if data:
        parts.append(_refusal(
            data, "records", f"records in --records_dir={config.data.records_dir}, which "
            "training takes as they are",
            "prepare records with them in a new --records_dir (--stage=prepare)"))
    if parts:
        raise ModelFlagsError("; and ".join(parts))
