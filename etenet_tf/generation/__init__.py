"""Caption generation: decoder-independent samplers and captioning."""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
