"""`--stage=caption`: caption a user's own videos, a few or a whole library.

Inputs: `--videos` (repeatable) names files, directories (searched
recursively for video files) and glob patterns; `--videos_from` list files
(`data.inputs.caption_inputs`, as on Beam). Each video is captioned once;
a name that matches nothing is reported and the others still get captions.

The engine is `generation.library.caption_videos` (decoding ahead in
worker processes, batches, output and resume); this job checks the flags
and the output before any work, loads the model and wires them together.

Results: `path<TAB>caption` per video on stdout (K lines, best first, with
`--num_captions=K`; tab, newline, backslash and undecodable bytes
escaped: `generation.outputs.parse_caption_line` reads a line back); a
video that cannot be captioned gets `path<TAB>ERROR: reason` on stderr;
`main.py` exits 1 if any failed. `--output` keeps the records
(`generation.outputs`). A progress bar (or, off a terminal, one summary
line) goes to stderr.

`--runner=beam` captions on an Apache Beam pipeline instead
(`etenet_tf.beam.caption`: RunInference, JSON Lines shards of `--output`).
"""

from etenet_tf import files
from etenet_tf.data import inputs
from etenet_tf.errors import UsageError
from etenet_tf.evaluation import attention_image
from etenet_tf.export import package
from etenet_tf.generation import CaptionGenerator
from etenet_tf.generation.library import caption_videos
from etenet_tf.generation.outputs import open_output
from etenet_tf.jobs.registry import checkpoint_stages
from etenet_tf.run_dir import RunDir


def run(config):
    """Captions `--videos` and `--videos_from`.

    Returns:
        dict video (or name that matched nothing) -> error message of the
        videos that failed in this run.
    """
    if config.source.model:  # a package is a model directory (export.package)
        config = config.replace(model_dir=package.model_directory(config), model="")
    caption, decoding = config.caption, config.decoding
    caption.validate()
    decoding.validate()
    config.beam.validate()
    if config.beam.runner == "beam":
        return _run_on_beam(config)
    if config.beam.saved_model:
        raise UsageError("--saved_model is read by --runner=beam")
    if not caption.videos and not caption.videos_from:
        raise UsageError("--stage=caption needs --videos=FILE, a directory or a pattern "
                         "(repeat the flag for more), or --videos_from=LIST_FILE")
    # where the results go is checked before any video is captioned
    if caption.output:
        files.check_file_target(caption.output, "output")
    if caption.attention_dir:
        files.ensure_directory(caption.attention_dir, "attention_dir")
    run_dir = RunDir(config.model_dir)
    stage = checkpoint_stages(config.evaluation.checkpoint, run_dir)[-1]
    spec = run_dir.read_input_spec()
    videos, problems = inputs.caption_inputs(caption.videos, caption.videos_from)
    with open_output(caption.output) as output:
        return caption_videos(
            config, videos, spec=spec, output=output, problems=problems,
            save_picture=attention_image.save_attention_image,
            make_generator=lambda: CaptionGenerator(run_dir.load_trained_model(stage),
                                                    decoding.sampler(),
                                                    decoding.max_decode_length))


def _run_on_beam(config):
    """`--runner=beam`: checks Beam and its options, picks the checkpoint
    (unless `--saved_model`), then runs the pipeline."""
    from etenet_tf.beam import caption as beam_caption
    options = beam_caption.check(config)
    stage = None
    if not config.beam.saved_model:
        stage = checkpoint_stages(config.evaluation.checkpoint, RunDir(config.model_dir))[-1]
    return beam_caption.caption(config, options, stage)
