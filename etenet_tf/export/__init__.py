"""Export: a SavedModel for TF Serving, on core TF ops only."""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
