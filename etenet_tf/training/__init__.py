"""Training: the stages, the custom strategy.run loop, objectives, checkpoints."""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
