"""EtENet end-to-end video captioning in Keras 3 / TensorFlow.

The subpackages follow the data flow (see the README's "Layout"):
`data` -> `text` -> `model` -> `generation` -> `training` -> `evaluation`
-> `export`, with `jobs` (one module per `main.py` stage) and `cli` on top;
`beam` runs prepare and caption as Apache Beam pipelines (`--runner=beam`).
Names used most are also here, imported on first use (`etenet_tf.exports`,
the one table of public names) so that importing `etenet_tf` (as the
TensorFlow-free prepare workers do) stays light.
"""

from etenet_tf import exports

__version__ = "0.2.0"

_names, __getattr__, __dir__ = exports.package(__name__)
__all__ = [*_names, "__version__"]
