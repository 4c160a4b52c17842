"""EtENet end-to-end video captioning in Keras 3 / TensorFlow.

The subpackages follow the data flow (see the README's "Layout"):
`data` -> `text` -> `model` -> `generation` -> `training` -> `evaluation`
-> `export`, with `jobs` (one module per `main.py` stage) and `cli` on top;
`beam` runs prepare and caption as Apache Beam pipelines (`--runner=beam`).
Names used most are also here, imported on first use so that importing
`etenet_tf` (as the TensorFlow-free prepare workers do) stays light.
"""

import importlib

__version__ = "0.2.0"

_LAZY = {
    "ExperimentConfig": "etenet_tf.jobs",
    "ModelConfig": "etenet_tf.model",
    "build_captioner": "etenet_tf.model",
    "EtENetCaptioner": "etenet_tf.model",
    "DecodingConfig": "etenet_tf.generation",
    "CaptionGenerator": "etenet_tf.generation",
    "RunDir": "etenet_tf.run_dir",
    "UserError": "etenet_tf.errors",
    "UsageError": "etenet_tf.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'etenet_tf' has no attribute {name!r}")
