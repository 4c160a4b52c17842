"""Where prepare and caption run: `BeamConfig` (`--runner`, `--beam_options`...)."""

import dataclasses

from etenet_tf.options import check, option

RUNNERS = ("local", "beam")


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """Options of the runner of the data-parallel stages (prepare, caption).

    Args:
        runner: `local` (this machine: a process pool) or `beam` (an
            Apache Beam pipeline).
        beam_options: Beam pipeline options as one string, split like a
            shell command line (`--runner=DataflowRunner --project=...`).
            Without `--runner` there: DirectRunner with `--workers`
            processes.
        saved_model: caption on Beam: the exported SavedModel that
            RunInference loads (a `--stage=export` version directory, any
            `tf.io.gfile` path); empty: `--model_dir`'s best checkpoint.
        output_shards: caption on Beam: JSON Lines shards of `--output`
            (0: one per 1000 videos).
    """

    runner: str = option("local", "prepare, caption: local (this machine, a process pool) or "
                         "beam (an Apache Beam pipeline; needs pip install -e \".[beam]\").",
                         choices=RUNNERS)
    beam_options: str = option("", "--runner=beam: Beam pipeline options in one string, e.g. "
                               "\"--runner=DataflowRunner --project=P --region=R "
                               "--temp_location=gs://B/tmp\" (default: DirectRunner with "
                               "--workers processes).")
    saved_model: str = option("", "caption --runner=beam: RunInference loads this exported "
                              "SavedModel (a --stage=export version directory; gs:// works) "
                              "instead of --model_dir's best checkpoint.")
    output_shards: int = option(0, "caption --runner=beam: JSON Lines shards of --output "
                                "(0: one per 1000 videos).", low=0)

    def validate(self):
        check(self)
