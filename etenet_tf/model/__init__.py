"""The captioner: frame encoder, spatio-temporal context, caption decoder."""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
