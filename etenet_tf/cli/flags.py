"""absl flags of `main.py`, one per config field (`etenet_tf.options`).

Experiment presets live in `flags/*.cfg`. The flags are generated from the
config dataclasses, so a flag's name, default, help and range are written
once, where the option is used.
"""

from absl import flags

from etenet_tf.jobs import SECTIONS, STAGES, ExperimentConfig
from etenet_tf.options import flag_fields

FLAGS = flags.FLAGS


def _define(field, flag_values):
    name, default, meta = field.name, field.default, field.metadata
    help_text = meta["help"]
    kwargs = {"flag_values": flag_values}
    if name == "stage":
        flags.DEFINE_enum("stage", None, STAGES, "What to run: " + ", ".join(STAGES) + ".",
                          **kwargs)
    elif meta.get("choices"):
        flags.DEFINE_enum(name, default, [str(c) for c in meta["choices"]], help_text, **kwargs)
    elif isinstance(default, bool):
        flags.DEFINE_boolean(name, default, help_text, **kwargs)
    elif isinstance(default, int):
        flags.DEFINE_integer(name, default, help_text, **kwargs)
    elif isinstance(default, float):
        flags.DEFINE_float(name, default, help_text, **kwargs)
    elif meta.get("multi"):
        flags.DEFINE_multi_string(name, list(default) or None, help_text, **kwargs)
    elif isinstance(default, tuple):
        flags.DEFINE_list(name, list(default), help_text, **kwargs)
    else:
        flags.DEFINE_string(name, default, help_text, **kwargs)


def define_flags(flag_values=FLAGS):
    """Defines every flag once in `flag_values` (safe to call again)."""
    if "stage" in flag_values:
        return
    for field in flag_fields(ExperimentConfig):
        _define(field, flag_values)
    for section in SECTIONS.values():
        for field in flag_fields(section):
            _define(field, flag_values)


def to_config(flag_values=FLAGS):
    """The parsed flags as an `ExperimentConfig`; its `explicit_flags` are
    those given on the command line or in a flagfile (absl's `present`)."""
    define_flags(flag_values)
    names = ExperimentConfig.flag_names()
    values = {name: flag_values[name].value for name in names}
    return ExperimentConfig.from_flat(
        values | {"stage": flag_values["stage"].value or ""},
        explicit_flags={name for name in names if flag_values[name].present})


def parse(argv, flag_values=None):
    """`ExperimentConfig` of a command line (`["main.py", "--stage=...", ...]`)
    parsed into fresh flags (`flag_values`: default a new `FlagValues`), as
    `main.py` parses it: for scripts and in-process tests."""
    flag_values = flags.FlagValues() if flag_values is None else flag_values
    define_flags(flag_values)
    flag_values(list(argv))
    return to_config(flag_values)
