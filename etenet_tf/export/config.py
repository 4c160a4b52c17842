"""Where and how the SavedModel for TF Serving is written: `ExportConfig`."""

import dataclasses

from etenet_tf import limits
from etenet_tf.options import check, option


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Options of the export stage.

    Args:
        export_dir: export root (TF Serving layout).
        export_name: model name under it.
        export_version: version number (0: the next free one).
        max_serving_frames: most frames per video in a request.
        max_serving_total_frames: most frames in a request.
        package_dir: where the self-contained model package goes ('': beside
            the SavedModels, `<export_dir>/<export_name>-package`).
    """

    export_dir: str = option("saved_models", "Export root (TF Serving layout).")
    export_name: str = option("etenet", "Model name under --export_dir.")
    export_version: int = option(0, "Version number (0: next free).", low=0)
    max_serving_frames: int = option(limits.MAX_SERVING_FRAMES,
                                     "export: most frames per video in a serving request.", low=1)
    max_serving_total_frames: int = option(
        limits.MAX_SERVING_TOTAL_FRAMES, "export: most frames in one serving request (videos x "
        "frames); bounds the memory of a request.", low=1)
    package_dir: str = option("", "export: also write the model in one piece (weights, config, "
                              "vocabulary, input spec, CIDEr-D frequencies, flags, scores, "
                              "model card) here ('': <export_dir>/<export_name>-package).")

    def validate(self):
        check(self)

    @property
    def package_path(self):
        """Where the model package goes."""
        return self.package_dir or f"{self.export_dir.rstrip('/')}/{self.export_name}-package"


@dataclasses.dataclass(frozen=True)
class ModelSourceConfig:
    """Where a stage that uses a trained model takes it from.

    Args:
        model: a model package (`--stage=export` writes one) as a local
            path or `hf://owner/name` (downloaded with huggingface_hub);
            '' uses the best checkpoint in `--model_dir`.
    """

    model: str = option("", "caption, evaluate, demo, export, finetune: use this model package "
                        "(a directory --stage=export wrote, or hf://owner/name) instead of "
                        "the checkpoints in --model_dir (evaluate then writes its scores, "
                        "finetune its checkpoints, to --model_dir).")

    def validate(self):
        check(self)
