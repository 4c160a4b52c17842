"""Data: decode videos, sample frames, data sources, sharded records, tf.data.

Names are imported on first use: the prepare workers import
`etenet_tf.data.video_decode` and must not pull TensorFlow in with it.
"""

import importlib

_LAZY = {
    "DataConfig": "etenet_tf.data.config",
    "VideoExample": "etenet_tf.data.examples",
    "AnnotationError": "etenet_tf.data.examples",
    "SOURCES": "etenet_tf.data.sources",
    "Source": "etenet_tf.data.sources",
    "load_examples": "etenet_tf.data.sources",
    "decode_video": "etenet_tf.data.video_decode",
    "sample_indices": "etenet_tf.data.video_decode",
    "VideoDecodeError": "etenet_tf.data.video_decode",
    "load_dataset_info": "etenet_tf.data.prepare",
    "train_dataset": "etenet_tf.data.pipeline",
    "eval_dataset": "etenet_tf.data.pipeline",
    "list_shards": "etenet_tf.data.records",
    "CorruptRecordsError": "etenet_tf.data.records",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'etenet_tf.data' has no attribute {name!r}")
