"""Captions as tokens: the vocabulary and the TF Text tokenizer."""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
