"""Data: decode videos, sample frames, data sources, sharded records, tf.data.

Names are imported on first use: the prepare workers import
`etenet_tf.data.video_decode` and must not pull TensorFlow in with it.
"""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
