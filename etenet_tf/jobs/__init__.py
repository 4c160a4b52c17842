"""The stages of `main.py`, one module each with `run(config)` (the training
stages share one, `jobs.train`, made from the stage registry), and the
`ExperimentConfig` they read."""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
