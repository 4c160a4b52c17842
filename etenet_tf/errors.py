"""Errors meant for people: each says what is wrong and how to fix it, and
carries the exit status `main.py` ends with (2: a usage error, fix the
command; 1: the run failed, fix the input or the machine)."""


class UserError(Exception):
    """Something the user must fix; `main.py` prints it as one line."""

    exit_code = 1


class UsageError(UserError):
    """A flag value or combination that cannot work (exit status 2)."""

    exit_code = 2


class MissingInputError(UserError):
    """An input a stage needs is not there (records, vocabulary, a file)."""


def no_imagenet_weights(encoder):
    """The one line for `--encoder_weights=imagenet` on an encoder that has no
    ImageNet weights (raised by `resolve_weights` and by the network itself)."""
    return (f"{encoder} has no ImageNet weights: pass --encoder_weights=none (random "
            "initialisation) or --encoder_weights=/path/to/weights.h5 (a file it wrote)")
