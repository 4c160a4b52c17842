"""Typed, documented options: dataclass fields that know their flag.

Every config of the package (`DataConfig`, `ModelConfig`, `TrainingConfig`,
`DecodingConfig`, `EvaluationConfig`, `ExportConfig`, ...) declares its
fields with `option(...)`: default, one line of help, and the range or
choices a value must fall in. The command line defines one absl flag per
field from that (same name, same default, same help), and `check` enforces
the ranges for configs built in Python too, so a value is checked the same
way whichever door it came in by.
"""

import dataclasses
import math

from etenet_tf.errors import UsageError


def option(default, help, *, low=None, high=None, low_open=False, high_open=False,
           choices=None, flag=True, multi=False):
    """A dataclass field with its flag's help and constraints.

    Args:
        default: the default value (a tuple for list options).
        help: one line for `--help` and the README.
        low, high: bounds of a number (None: unbounded).
        low_open, high_open: exclude the bound itself.
        choices: allowed values of a string option.
        flag: False for fields set by the program, not by a flag.
        multi: a list option given by repeating its flag (`--x=a --x=b`),
            each value taken whole (commas included); other list options
            are one comma-separated value.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
        "choices": tuple(choices) if choices else None, "flag": flag, "multi": multi})


def flag_fields(config_class):
    """The fields of a config class that are command-line flags."""
    return [f for f in dataclasses.fields(config_class) if f.metadata.get("flag", False)]


def check(config):
    """Raises `UsageError` naming the flag when a value is out of its range
    or not one of its choices."""
    for f in dataclasses.fields(config):
        meta, value = f.metadata, getattr(config, f.name)
        if not meta:
            continue
        if meta.get("choices") and value not in meta["choices"]:
            raise UsageError(f"--{f.name}={value} is unknown; choose one of "
                             f"{', '.join(map(str, meta['choices']))}")
        low, high = meta.get("low"), meta.get("high")
        if (low is None and high is None) or isinstance(value, bool):
            continue
        low_ok = low is None or value > low or (value == low and not meta["low_open"])
        high_ok = high is None or value < high or (value == high and not meta["high_open"])
        if not (math.isfinite(value) and low_ok and high_ok):
            raise UsageError(f"--{f.name}={value:g} must be {_span(meta)}")


def _span(meta):
    low, high = meta["low"], meta["high"]
    if high is None:
        return f"{'>' if meta['low_open'] else '>='} {low:g}"
    if low is None:
        return f"{'<' if meta['high_open'] else '<='} {high:g}"
    return (f"in {'(' if meta['low_open'] else '['}{low:g}, {high:g}"
            f"{')' if meta['high_open'] else ']'}")
