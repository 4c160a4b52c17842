"""The command line: `python main.py --stage=...` (flags -> ExperimentConfig)."""

from etenet_tf.cli.main import run

__all__ = ["run"]
