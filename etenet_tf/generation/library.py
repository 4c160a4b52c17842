"""Captioning a library of videos: the caption stage's engine.

`caption_videos` decodes the videos in worker processes
(`data.decode_pool`, the one pool of prepare, caption and Beam, with
`--decode_timeout_s`) up to two batches ahead, stacks them into batches
of `--caption_batch_size`, and captions one batch while the workers
decode the next ones; memory holds at most three batches of frames,
whatever the number of videos. A remote video is fetched by its worker
(`video_decode.local_copy`).

Each batch's records go to the output (`generation.outputs`: JSON Lines
written per batch and resumed by a re-run, or `*.json` at the end) and
its lines to stdout, `path<TAB>caption` escaped as
`outputs.caption_line` says (`outputs.parse_caption_line` reads them
back); a video that cannot be captioned gets `path<TAB>ERROR: reason` on
stderr. Ctrl-C or SIGTERM stop the workers at once; what was written is
kept and a re-run resumes.
"""

import contextlib
import os
import sys

import numpy as np

from etenet_tf import interrupts
from etenet_tf.data import decode_pool, video_decode
from etenet_tf.generation.captioning import caption_records, error_record
from etenet_tf.generation.outputs import JsonLinesOutput, caption_line, record_key
from etenet_tf.progress import Progress

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

    def __init__(self, config, output, progress, save_picture):
        self.config, self.output, self.progress = config, output, progress
        self.save_picture = save_picture
        self.failures = {}
        self.captioned = 0

    def fail(self, video, reason, write=True):
        self.failures[video] = reason
        self.progress.print(caption_line(video, f"ERROR: {reason}"), file=sys.stderr)
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
                    self.save_picture(pictures[video], frames,
                                      record["caption"].split() + ["<end>"], attention[i, 0])
                    record["attention"] = pictures[video]
                captioned[video] = record
        records, lines = [], []
        for video, _, error in batch:
            if video in captioned:
                record = captioned[video]
                records.append(record)
                texts = [c["caption"] for c in record.get("captions", [record])]
                lines += [caption_line(video, text) for text in texts]
            else:
                records += self.fail(video, error)
        # the batch's lines are written whole: Ctrl-C/SIGTERM waits for them
        with interrupts.deferred():
            self.output.write(records)
        for line in lines:
            self.progress.print(line)
        self.captioned += len(captioned)
        self.progress.advance(len(batch))


def caption_videos(config, videos, *, spec, make_generator, output, problems=(),
                   save_picture=None):
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
        save_picture: callable(path, frames, words, attention) writing one
            attention picture (`evaluation.attention_image`), needed with
            `--attention_dir`.

    Returns:
        dict video (or name) -> error message of what failed in this run.
    """
    caption = config.caption
    todo = [v for v in videos if record_key(v) not in output.done]
    skipped = len(videos) - len(todo)
    pictures = picture_names(caption.attention_dir, videos) if caption.attention_dir else None
    progress = Progress("caption", len(videos), done=skipped, show=config.progress)
    job = _Stage(config, output, progress, save_picture)
    with progress:
        # names that match nothing: reported on every run, recorded once
        job.output.write([r for name, reason in problems
                          for r in job.fail(name, reason, record_key(name) not in output.done)])
        if todo:
            size = min(caption.caption_batch_size, len(todo))
            workers = min(config.data.workers or os.cpu_count() or 1, len(todo))
            jobs = ((video, spec["num_frames"], spec["image_size"], None,
                     config.data.max_frame_pixels) for video in todo)
            # the workers decode while the model loads and compiles
            decoder = decode_pool.OrderedDecoder(
                video_decode.decode_job, jobs, workers=workers,
                ahead=max(BATCHES_AHEAD * size, workers),
                timeout_s=config.data.decode_timeout_s)
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
