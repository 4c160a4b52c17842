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
    """

    export_dir: str = option("saved_models", "Export root (TF Serving layout).")
    export_name: str = option("etenet", "Model name under --export_dir.")
    export_version: int = option(0, "Version number (0: next free).", low=0)
    max_serving_frames: int = option(limits.MAX_SERVING_FRAMES,
                                     "export: most frames per video in a serving request.", low=1)
    max_serving_total_frames: int = option(
        limits.MAX_SERVING_TOTAL_FRAMES, "export: most frames in one serving request (videos x "
        "frames); bounds the memory of a request.", low=1)

    def validate(self):
        check(self)
