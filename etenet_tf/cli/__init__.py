"""The command line: `python main.py --stage=...` (flags -> ExperimentConfig)."""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
