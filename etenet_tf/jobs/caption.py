"""`--stage=caption`: caption a user's own videos, a few or a whole library.

Inputs: `--videos` (repeatable) names files, directories (searched
recursively for video files) and glob patterns; `--videos_from` list files
(`data.inputs.expand_video_inputs`). Each video is captioned once; a name
that matches nothing is reported and the others still get captions.

Throughput: videos are decoded in worker processes (`data.decode_pool`,
the prepare stage's decoder) up to two batches ahead, stacked into batches
of `--caption_batch_size`, and the model captions one batch while the
workers decode the next ones; memory holds at most three batches of
frames, whatever the number of videos.

Results: `path<TAB>caption` per video on stdout (K lines, best first, with
`--num_captions=K`); a video that cannot be captioned gets
`path<TAB>ERROR: reason` on stderr; `main.py` exits 1 if any failed.
`--output` keeps the records (`generation.outputs`: JSON Lines written per
batch and resumed by a re-run, or `*.json` at the end). A progress bar
(or, off a terminal, one summary line) goes to stderr.

`--runner=beam` captions on an Apache Beam pipeline instead
(`etenet_tf.beam.caption`: RunInference, JSON Lines shards of `--output`).
"""

import contextlib
import os
import sys

import numpy as np

from etenet_tf import files, interrupts
from etenet_tf.data import decode_pool, inputs, video_decode
from etenet_tf.errors import UsageError
from etenet_tf.evaluation import attention_image
from etenet_tf.export import package
from etenet_tf.generation import CaptionGenerator
from etenet_tf.generation.captioning import caption_records, error_record
from etenet_tf.generation.outputs import JsonLinesOutput, open_output, record_key
from etenet_tf.jobs.registry import checkpoint_stages
from etenet_tf.progress import Progress
from etenet_tf.run_dir import RunDir

# decoded videos waiting for the model, in batches (the one being captioned
# comes on top): enough for the workers never to wait on a batch boundary
BATCHES_AHEAD = 2


def picture_names(directory, videos):
    """`{video: <directory>/<file name with extension>.png}`, numbered in
    the order of `videos` when two share a file name (`a.mp4.png`,
    `a.mp4-2.png`), so no picture overwrites another and a re-run gives
    every video the same name."""
    names, taken = {}, set()
    for video in videos:
        base = os.path.basename(video.rstrip("/"))
        name, n = f"{base}.png", 1
        while name in taken:
            n += 1
            name = f"{base}-{n}.png"
        taken.add(name)
        names[video] = os.path.join(directory, name)
    return names


def legacy_comma_names(names, warn):
    """`--videos` was one comma-separated flag: a value that names nothing
    but whose comma-separated parts do is read the old way (with a note),
    so old commands keep working, and a file whose name has a comma is
    still one file when it exists."""
    result = []
    for name in names:
        if "," in name:
            found, _ = inputs.expand_video_inputs([name])
            parts = [p for p in name.split(",") if p]
            if not found and any(inputs.expand_video_inputs([p])[0] for p in parts):
                warn(f"note: --videos={name} names no file; read as {len(parts)} names "
                     "separated by commas (repeat --videos for several names)")
                result += parts
                continue
        result.append(name)
    return result


def _batches(items, size):
    """Lists of `(video, frames, error)` holding `size` decoded videos each
    (the last may hold fewer), with the failures between them."""
    batch, decoded = [], 0
    for video, (frames, error) in items:
        batch.append((video, frames, error))
        decoded += frames is not None
        if decoded == size:
            yield batch
            batch, decoded = [], 0
    if batch:
        yield batch


def _stack(frames, size):
    """`[size, ...]` frames: the videos, then the last one repeated (the
    model keeps one compiled shape; the extra rows are dropped)."""
    stacked = np.stack(frames)
    if len(frames) < size:
        stacked = np.concatenate([stacked, np.repeat(stacked[-1:], size - len(frames), 0)])
    return stacked


class _Stage:
    """One caption run: its output, progress and counts."""

    def __init__(self, config, output, progress):
        self.config, self.output, self.progress = config, output, progress
        self.failures = {}
        self.captioned = 0

    def fail(self, video, reason, write=True):
        self.failures[video] = reason
        self.progress.print(f"{video}\tERROR: {reason}", file=sys.stderr)
        return [error_record(video, reason)] if write else []

    def caption(self, generator, batch, size, pictures):
        """Captions one batch; writes and prints its records in input order."""
        decoded = [(video, frames) for video, frames, _ in batch if frames is not None]
        captioned = {}
        if decoded:
            captions = generator(_stack([frames for _, frames in decoded], size))
            attention = captions.attention.numpy() if pictures else None
            for i, record in enumerate(caption_records([video for video, _ in decoded],
                                                       captions)):
                video, frames = decoded[i]
                if pictures:
                    attention_image.save_attention_image(
                        pictures[video], frames, record["caption"].split() + ["<end>"],
                        attention[i, 0])
                    record["attention"] = pictures[video]
                captioned[video] = record
        records, lines = [], []
        for video, _, error in batch:
            if video in captioned:
                record = captioned[video]
                records.append(record)
                texts = [c["caption"] for c in record.get("captions", [record])]
                lines += [f"{video}\t{text}" for text in texts]
            else:
                records += self.fail(video, error)
        # the batch's lines are written whole: Ctrl-C/SIGTERM waits for them
        with interrupts.deferred():
            self.output.write(records)
        for line in lines:
            self.progress.print(line)
        self.captioned += len(captioned)
        self.progress.advance(len(batch))


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
    names = legacy_comma_names(caption.videos, lambda m: print(m, file=sys.stderr, flush=True))
    videos, problems = inputs.expand_video_inputs(names, caption.videos_from)
    with open_output(caption.output) as output:
        return caption_videos(
            config, videos, spec=spec, output=output, problems=problems,
            make_generator=lambda: CaptionGenerator(run_dir.load_trained_model(stage),
                                                    decoding.sampler(),
                                                    decoding.max_decode_length))


def caption_videos(config, videos, *, spec, make_generator, output, problems=()):
    """The caption loop over `videos`: decode ahead, caption in batches,
    write and print each batch's records.

    Args:
        config: the `ExperimentConfig` (caption, data and progress options).
        videos: video paths, each once.
        spec: `{"num_frames", "image_size"}` the model takes.
        make_generator: returns the `CaptionGenerator`; called once the
            decoding has started, so the model loads meanwhile.
        output: a `generation.outputs` output (its `done` videos are skipped).
        problems: `(name, reason)` of names that matched no video.

    Returns:
        dict video (or name) -> error message of what failed in this run.
    """
    caption = config.caption
    todo = [v for v in videos if record_key(v) not in output.done]
    skipped = len(videos) - len(todo)
    pictures = picture_names(caption.attention_dir, videos) if caption.attention_dir else None
    progress = Progress("caption", len(videos), done=skipped, show=config.progress)
    job = _Stage(config, output, progress)
    with progress:
        # names that match nothing: reported on every run, recorded once
        job.output.write([r for name, reason in problems
                          for r in job.fail(name, reason, record_key(name) not in output.done)])
        if todo:
            size = min(caption.caption_batch_size, len(todo))
            workers = min(config.data.workers or os.cpu_count() or 1, len(todo))
            jobs = ((video, spec["num_frames"], spec["image_size"],
                     config.data.max_frame_pixels) for video in todo)
            # the workers decode while the model loads and compiles
            decoder = decode_pool.OrderedDecoder(
                video_decode.decode_frames_job, jobs, workers=workers,
                ahead=max(BATCHES_AHEAD * size, workers))
            with contextlib.closing(decoder):
                generator = make_generator()
                try:
                    for batch in _batches(zip(todo, decoder), size):
                        job.caption(generator, batch, size, pictures)
                except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: say what is kept
                    e.detail = getattr(e, "detail", None) or _kept(output)
                    raise
        output.finish()
        progress.finish(_summary(job, len(todo), skipped, problems, output, progress))
    return job.failures


def _kept(output):
    if isinstance(output, JsonLinesOutput):
        return f"{len(output.done)} videos are recorded in {output.path}"
    if output.path:
        return (f"nothing was written to {output.path} (a .json output is written at the end; "
                "--output=*.jsonl is written per batch and resumes)")
    return "the captions so far were printed; --output=*.jsonl keeps them and resumes"


def _summary(job, todo, skipped, problems, output, progress):
    failed = len(job.failures) - len(problems)
    text = (f"caption: {todo} videos in {progress.elapsed:.1f}s ({progress.rate:.2f} videos/s): "
            f"{job.captioned} captioned, {failed} failed")
    if skipped:
        text += f", {skipped} skipped (already in {output.path})"
    if problems:
        text += f"; {len(problems)} name{'s' if len(problems) > 1 else ''} matched no video"
    if output.path:
        text += f"; records in {output.path}"
    return text


def _run_on_beam(config):
    """`--runner=beam`: checks Beam and its options, picks the checkpoint
    (unless `--saved_model`), then runs the pipeline."""
    from etenet_tf.beam import caption as beam_caption
    options = beam_caption.check(config)
    stage = None
    if not config.beam.saved_model:
        stage = checkpoint_stages(config.evaluation.checkpoint, RunDir(config.model_dir))[-1]
    return beam_caption.caption(config, options, stage)
