"""`--stage=caption --runner=beam`: offline captioning with RunInference.

The launcher expands `--videos` and `--videos_from` as the local caption
stage does (`etenet_tf.data.inputs.caption_inputs`: files, directories,
glob patterns, list files, the old comma-separated form; any `tf.io.gfile`
path), writes the list to work files and runs:

    work files --read--> videos --Reshuffle--> DecodeFrames (the local
    stage's `video_decode.decode_job`, frames and size of the training
    data) --RunInference(KeyedModelHandler(CaptionModelHandler))-->
    `caption_records` --+--> shard by video --> `<output>-i-of-n.jsonl`
    undecodable videos and names matching nothing: `error_record` --+

so every line is the very record the local stage writes for that video
(`etenet_tf.generation.captioning`). Lines are grouped into `n` shards by
a hash of the video path and sorted by path within each; `n` is
`--output_shards` (default one per 1000 videos), every shard is written
even when empty, and shards of an earlier run with another `n` are
removed.

The model: with `--saved_model`, the exported SavedModel
(`--stage=export`; its `serving_frames` signature runs the encoder, beam
search and detokenisation, with the beam settings it was exported with,
best caption only), loaded by each worker from any `tf.io.gfile` path,
which is what a Dataflow job reads from cloud storage; its frame count
and size come from the export's `assets.extra/input_spec.json`. Without
it, each worker loads the Keras model of `--model_dir` (`--checkpoint`,
decoding flags as the local stage), which must then be readable by the
workers. Apache Beam's own `TFModelHandlerTensor` is not used: it loads
through `tf.keras.models.load_model` (Keras 3 reads no SavedModel
directory) and imports `tensorflow_hub`, which would pull in a second
Keras; `CaptionModelHandler` keeps its batching, model sharing and
metrics, and calls the signature or `CaptionGenerator` directly.
"""

import json
import os
import re
import sys
import time
import zlib

import numpy as np

from etenet_tf.beam import runtime

beam = runtime.require_beam()  # this module is imported for --runner=beam only

from apache_beam.metrics.metric import Metrics  # noqa: E402
from apache_beam.ml.inference.base import (  # noqa: E402
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)

from etenet_tf import files  # noqa: E402
from etenet_tf.data.inputs import caption_inputs  # noqa: E402
from etenet_tf.errors import UsageError, UserError  # noqa: E402
from etenet_tf.export import serving  # noqa: E402
from etenet_tf.generation.captioning import Captions, caption_records, error_record  # noqa: E402
from etenet_tf.run_dir import RunDir  # noqa: E402

VIDEOS_PER_SHARD = 1000  # default --output_shards: one shard per this many videos
SIGNATURE = "serving_frames"


class CaptionInputError(UserError):
    """No video to caption, or a model whose frame count is unknown."""


def check(config):
    """Checks the flags and Beam's options before any work; returns the
    `PipelineOptions`."""
    caption, beam_config = config.caption, config.beam
    if not caption.videos and not caption.videos_from:
        raise UsageError("--stage=caption needs --videos=FILE, a directory or a pattern "
                         "(repeat the flag for more), or --videos_from=LIST_FILE")
    output_paths(caption.output)  # checks the name
    if caption.attention_dir:
        raise UsageError("--attention_dir is not written by --runner=beam; caption those "
                         "videos with --runner=local")
    if beam_config.saved_model and config.decoding.num_captions > 1:
        raise UsageError("--num_captions > 1 needs the Keras model: an exported --saved_model "
                         "serves the best caption only (leave --saved_model out)")
    if not files.is_remote(caption.output):
        files.check_file_target(caption.output, "output")
    return runtime.pipeline_options(beam_config, config.data.workers)


def output_paths(output):
    """`(prefix, suffix)` of the shards of `--output` (`captions.jsonl` ->
    `captions`, `.jsonl`: shards `captions-00000-of-00004.jsonl`)."""
    if not output:
        raise UsageError("--runner=beam writes the caption records to JSON Lines shards: give "
                         "--output=captions.jsonl (any tf.io.gfile path)")
    prefix, suffix = os.path.splitext(output)
    if suffix.lower() == ".json":
        raise UsageError(f"--output={output}: --runner=beam writes JSON Lines shards, one "
                         "record a line; name it .jsonl")
    return prefix, suffix or ".jsonl"


def shard_path(prefix, suffix, index, count):
    return f"{prefix}-{index:05d}-of-{count:05d}{suffix}"


def model_input_spec(config):
    """`(num_frames, image_size)` the model was trained on: from the export
    with `--saved_model`, else (or for an export without it) from
    `--model_dir`."""
    if config.beam.saved_model:
        spec = serving.read_input_spec(config.beam.saved_model)
        if spec:
            return spec["num_frames"], spec["image_size"]
        if not files.isdir(config.beam.saved_model):
            raise UsageError(f"--saved_model={config.beam.saved_model} is not a SavedModel "
                             "directory (a version directory of --stage=export)")
    run_dir = RunDir(config.model_dir)
    try:
        num_frames = run_dir.read_input_spec()["num_frames"]
        image_size = run_dir.read_model_config().image_size
    except UserError:
        if config.beam.saved_model:
            raise CaptionInputError(
                f"--saved_model={config.beam.saved_model} has no {serving.INPUT_SPEC_FILE} and "
                f"--model_dir={config.model_dir} holds no model: export it again with this "
                "version, or give the --model_dir it was trained in") from None
        raise
    return num_frames, image_size


def caption(config, options, stage=None):
    """Captions the videos on Beam; returns `{video: reason}` of those that
    failed (as the local stage: the exit status is 1 if any did).

    Args:
        config: the `ExperimentConfig`.
        options: `check(config)`.
        stage: the training stage whose best checkpoint the workers load
            (None with `--saved_model`).
    """
    caption_config, beam_config = config.caption, config.beam
    num_frames, image_size = model_input_spec(config)
    videos, problems = caption_inputs(caption_config.videos, caption_config.videos_from)
    for name, reason in problems:
        print(f"{name}\tERROR: {reason}", file=sys.stderr, flush=True)
    if not videos and not problems:
        raise CaptionInputError("no video to caption")
    prefix, suffix = output_paths(caption_config.output)
    count = beam_config.output_shards or max(1, -(-len(videos) // VIDEOS_PER_SHARD))
    model = (f"SavedModel {beam_config.saved_model}" if beam_config.saved_model
             else f"{stage} checkpoint of {config.model_dir}")
    print(f"caption: {len(videos)} videos to caption on Beam ({runtime.describe(options)}) with "
          f"the {model}; records to {shard_path(prefix, suffix, 0, count)} ...", flush=True)
    for hint in (runtime.needs_package_hint(options),
                 runtime.local_paths_hint(options, videos, "--videos")):
        if hint:
            print(hint, flush=True)
    handler = CaptionModelHandler(
        saved_model=beam_config.saved_model, model_dir=config.model_dir, stage=stage,
        decoding=config.decoding, batch_size=caption_config.caption_batch_size)
    work_dir = os.path.join(os.path.dirname(prefix), f".{os.path.basename(prefix)}.beam-work")
    work = runtime.stage_work(work_dir, videos) if videos else []
    unmatched = [error_record(name, reason) for name, reason in problems]

    def build(pipeline):
        decoded = (pipeline
                   | "Work files" >> beam.Create(work)
                   | "Videos" >> beam.FlatMap(runtime.read_work)
                   | "Spread" >> beam.Reshuffle()
                   | "Decode" >> beam.ParDo(DecodeFrames(num_frames, image_size,
                                                         config.data.max_frame_pixels,
                                                         config.data.decode_timeout_s))
                   .with_outputs(DecodeFrames.ERRORS, main="frames"))
        captioned = (decoded.frames
                     | "RunInference" >> RunInference(KeyedModelHandler(handler))
                     | "Records" >> beam.Map(_record))
        unreadable = pipeline | "Unmatched names" >> beam.Create(unmatched)
        shards = pipeline | "Shard indices" >> beam.Create([(i, None) for i in range(count)])
        lines = ((captioned, decoded[DecodeFrames.ERRORS], unreadable)
                 | "All records" >> beam.Flatten()
                 | "To shard" >> beam.Map(_keyed_line, count))
        _ = ((lines, shards)
             | "With every shard" >> beam.Flatten()
             | "By shard" >> beam.GroupByKey()
             | "Write shards" >> beam.ParDo(WriteLines(prefix, suffix, count)))

    start = time.time()
    counts = runtime.run(build, options, advice="re-run the same command")
    runtime.remove_work(work_dir)
    _remove_other_shards(prefix, suffix, count)
    failed = {}
    if not counts or counts.get("videos_failed"):  # (no counters: a runner without metrics)
        wanted = set(videos)
        failed = {video: reason for video, reason in _errors(prefix, suffix, count).items()
                  if video in wanted}
    for video, reason in failed.items():
        print(f"{video}\tERROR: {reason}", file=sys.stderr, flush=True)
    failures = dict(problems) | failed
    print(f"caption: {len(videos) - len(failed)} videos captioned, {len(failed)} failed"
          f"{f', {len(problems)} names matched nothing' if problems else ''}, in "
          f"{time.time() - start:.1f}s; records in "
          f"{shard_path(prefix, suffix, 0, count).replace('-00000-', '-*-')}", flush=True)
    return failures


def _record(keyed):
    """`(video, PredictionResult)` -> the caption stage's record."""
    video, result = keyed
    texts, scores = result.inference
    return caption_records([video], Captions(np.asarray([texts]), np.asarray([scores]),
                                             None, None))[0]


def _keyed_line(record, count):
    """`(shard index, JSON line)`: the shard from a stable hash of the path."""
    key = zlib.crc32(os.fsencode(record["video"])) % count
    return key, files.json_dumps(record)


def _errors(prefix, suffix, count):
    """`{video: error}` of the error records in the shards."""
    errors = {}
    for i in range(count):
        for line in files.read_text(shard_path(prefix, suffix, i, count)).splitlines():
            record = json.loads(line)
            if "error" in record:
                errors[record["video"]] = record["error"]
    return errors


def _remove_other_shards(prefix, suffix, count):
    """Deletes the shards of `--output` that an earlier run wrote with
    another shard count (they would be read as part of this output)."""
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"-\d{5}-of-(\d{5})" +
                         re.escape(suffix) + "$")
    for path in files.glob_paths(f"{prefix}-*-of-*{suffix}"):
        match = pattern.match(os.path.basename(path))
        if match and int(match.group(1)) != count:
            files.remove(path)


class DecodeFrames(beam.DoFn):
    """A video path -> `(path, uint8 frames [T, S, S, 3])`, decoded as the
    local caption stage does (`video_decode.decode_job` in a worker
    process, `--decode_timeout_s`); an undecodable video -> its error
    record on the `errors` output."""

    ERRORS = "errors"

    def __init__(self, num_frames, image_size, max_pixels, timeout_s):
        super().__init__()
        self.args = (num_frames, image_size, None, max_pixels)
        self.decoding = runtime.Decoding(timeout_s)
        self.decoded = Metrics.counter(runtime.NAMESPACE, "videos_decoded")
        self.failed = Metrics.counter(runtime.NAMESPACE, "videos_failed")

    def setup(self):
        self.decoding.setup()

    def teardown(self):
        self.decoding.teardown()

    def process(self, path):
        frames, error = self.decoding.decode((path,) + self.args)
        if frames is None:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_record(path, error))
            return
        self.decoded.inc()
        yield path, frames


class WriteLines(beam.DoFn):
    """`(shard index, [line or None, ...])` -> one shard, lines sorted,
    written atomically."""

    def __init__(self, prefix, suffix, count):
        super().__init__()
        self.prefix, self.suffix, self.count = prefix, suffix, count

    def process(self, element):
        index, lines = element
        lines = sorted(line for line in lines if line is not None)
        files.write_text(shard_path(self.prefix, self.suffix, index, self.count),
                         "".join(line + "\n" for line in lines))
        yield index


class CaptionModelHandler(ModelHandler):
    """RunInference's model handler for the captioner: uint8 frames
    `[T, S, S, 3]` per video in, `(texts [n], scores [n])` out.

    Args:
        saved_model: an exported SavedModel (`serving_frames` is called),
            or empty for the Keras model of `model_dir`.
        model_dir: the model directory (Keras model).
        stage: its training stage whose best weights are loaded.
        decoding: the `DecodingConfig` (Keras model).
        batch_size: most videos per call.
    """

    def __init__(self, *, saved_model, model_dir, stage, decoding, batch_size):
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self.saved_model = saved_model
        self.model_dir = model_dir
        self.stage = stage
        self.decoding = decoding

    def load_model(self):
        import tensorflow as tf
        if self.saved_model:
            loaded = tf.saved_model.load(self.saved_model)
            signature = loaded.signatures[SIGNATURE]

            def run(frames):
                out = signature(frames=tf.constant(frames, tf.float32))
                return out["captions"].numpy()[:, None], out["scores"].numpy()[:, None]

            run.keep = loaded  # the functions need their object alive
            return run
        from etenet_tf.generation import CaptionGenerator
        model = RunDir(self.model_dir).load_trained_model(self.stage)
        generator = CaptionGenerator(model, self.decoding.sampler(),
                                     self.decoding.max_decode_length)

        def run(frames):
            captions = generator(frames)
            return captions.texts.numpy(), captions.scores.numpy()

        return run

    def run_inference(self, batch, model, inference_args=None):
        texts, scores = model(np.stack(batch))
        return [PredictionResult(None, (texts[i], scores[i])) for i in range(len(batch))]

    def get_num_bytes(self, batch):
        return sum(frames.nbytes for frames in batch)

    def get_metrics_namespace(self):
        return "etenet_tf.RunInference"
