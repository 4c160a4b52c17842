"""absl flags of `main.py`, one per config field (`etenet_tf.options`).

Experiment presets live in `flags/*.cfg`. The flags are generated from the
config dataclasses, so a flag's name, default, help and range are written
once, where the option is used.
"""

from absl import flags

from etenet_tf.jobs import SECTIONS, STAGES, ExperimentConfig
from etenet_tf.options import flag_fields

FLAGS = flags.FLAGS


def _define(field):
    name, default, meta = field.name, field.default, field.metadata
    help_text = meta["help"]
    if name == "stage":
        flags.DEFINE_enum("stage", None, STAGES, "What to run: " + ", ".join(STAGES) + ".")
    elif meta.get("choices"):
        flags.DEFINE_enum(name, default, [str(c) for c in meta["choices"]], help_text)
    elif isinstance(default, bool):
        flags.DEFINE_boolean(name, default, help_text)
    elif isinstance(default, int):
        flags.DEFINE_integer(name, default, help_text)
    elif isinstance(default, float):
        flags.DEFINE_float(name, default, help_text)
    elif meta.get("multi"):
        flags.DEFINE_multi_string(name, list(default) or None, help_text)
    elif isinstance(default, tuple):
        flags.DEFINE_list(name, list(default), help_text)
    else:
        flags.DEFINE_string(name, default, help_text)


def define_flags():
    """Defines every flag once (safe to call again)."""
    if "stage" in FLAGS:
        return
    for field in flag_fields(ExperimentConfig):
        _define(field)
    for section in SECTIONS.values():
        for field in flag_fields(section):
            _define(field)


def to_config():
    """The parsed flags as an `ExperimentConfig`; its `explicit_flags` are
    those given on the command line or in a flagfile (absl's `present`)."""
    define_flags()
    names = ExperimentConfig.flag_names()
    return ExperimentConfig.from_flat(
        {name: FLAGS[name].value for name in names} | {"stage": FLAGS["stage"].value or ""},
        explicit_flags={name for name in names if FLAGS[name].present})
