"""Export: a SavedModel for TF Serving, on core TF ops only."""

from etenet_tf.export.config import ExportConfig
from etenet_tf.export.serving import ExportWriteError, build_archive, export

__all__ = ["ExportConfig", "ExportWriteError", "build_archive", "export"]
