"""`--stage=prepare`: decode each video once into sharded TFRecords.

Videos are decoded in parallel worker processes (PyAV + Pillow, no
TensorFlow there), each yielding `num_frames` JPEG frames of
`image_size` pixels. The parent writes shards in order, each atomically.

Resuming: a shard whose final file exists and matches its checksum is
kept and its videos are not decoded again; the shard layout depends only
on the annotations and `videos_per_shard`, so a re-run recomputes the same
layout. A shard that fails its checksum (damaged on disk) is written
again. Per-shard problem lists are stored beside each shard
(`*.problems.json`, written before the shard itself) so the final report
is complete after a resume.

Two prepare runs never write one records directory at once: the second
refuses (`files.exclusive_lock`).

Problem videos (missing file, undecodable, empty, unsafe id) are skipped
and listed in `prepare_report.json`; with `strict=True` the first one
stops the run.

Runners: `prepare` decodes in worker processes on this machine
(`decode_pool.OrderedDecoder`, the caption stage's pool: a video over
`--decode_timeout_s` or one that kills its worker is an undecodable
video, its worker is replaced; Ctrl-C and SIGTERM stop the workers at
once and keep the finished shards). An Apache
Beam pipeline (`etenet_tf.beam.prepare`) runs the same two halves,
`begin` (checks and the shard plan) and `finish` (vocabulary and reports),
around its own decoding, with the same per-video functions
(`decode_job_args`, `frames_record`, `problem_entry`, `write_shard`), so
both write the same files. Every path may be remote (`gs://...`, see
`etenet_tf.files`); a remote records directory is not locked.
"""

import collections
import contextlib
import dataclasses
import json
import os
import sys

from etenet_tf import files, limits
from etenet_tf.data import attributes as attributes_lib
from etenet_tf.data import decode_pool, records, video_decode
from etenet_tf.errors import MissingInputError, UserError
from etenet_tf.files import write_json
from etenet_tf.text import ngrams, tokenizer

PARAMS_FILE = "prepare_params.json"
DATASET_FILE = "dataset.json"
REPORT_FILE = "prepare_report.json"
VOCABULARY_FILE = "vocab.txt"


class PrepareError(UserError):
    """Prepare cannot go on (strict mode, or inconsistent output dir)."""


def plan_shards(examples, videos_per_shard):
    """Groups usable examples by split into shards: {split: [[ex, ...], ...]}."""
    by_split = collections.defaultdict(list)
    for ex in examples:
        if ex.problem is None:
            by_split[ex.split].append(ex)
    return {
        split: [exs[i: i + videos_per_shard] for i in range(0, len(exs), videos_per_shard)]
        for split, exs in by_split.items()
    }


@dataclasses.dataclass
class Plan:
    """What one prepare run writes (`begin`), whoever decodes (the process
    pool here, or an Apache Beam pipeline: `etenet_tf.beam`).

    Args:
        params: the parameters recorded in `prepare_params.json`.
        skipped: problem kind -> ids of the videos skipped before decoding.
        shards: `plan_shards` of the usable examples.
        todo: `(split, index, count, examples)` of each shard still to write
            (missing or damaged), in split order.
    """

    params: dict
    skipped: dict
    shards: dict
    todo: list

    @property
    def total_videos(self):
        return sum(len(s) for shards in self.shards.values() for s in shards)

    @property
    def todo_videos(self):
        return sum(len(t[3]) for t in self.todo)


def prepare(examples, output_dir, num_frames, image_size, *, dataset_name,
            vocabulary_builder, videos_per_shard=64, workers=None, strict=False,
            jpeg_quality=90, max_pixels=limits.MAX_FRAME_PIXELS,
            decode_timeout_s=limits.DECODE_TIMEOUT_S, progress=None):
    """Writes frame records, the vocabulary, `dataset.json`, the report and,
    when examples have attributes, `attributes.json`.

    Args:
        examples: `VideoExample`s from a dataset adapter.
        output_dir: records directory.
        num_frames: frames sampled per video.
        image_size: side of the stored frames.
        dataset_name: recorded in `dataset.json`.
        vocabulary_builder: callable(list of train caption strings) ->
            `Vocabulary`.
        videos_per_shard: videos per TFRecord shard.
        workers: decoding processes (default: CPU count).
        strict: raise `PrepareError` on the first problem video.
        jpeg_quality: JPEG quality of stored frames.
        max_pixels: videos whose frames have more pixels are skipped (their
            size is checked before decoding).
        decode_timeout_s: most seconds one video may take to decode (None:
            no limit); a video over it is undecodable, the rest go on.
        progress: optional callable(done_videos, total_videos).

    Returns:
        The report dict (also written to `prepare_report.json`).

    Raises:
        files.LockedError: another run is writing `output_dir`.
    """
    with records_dir_lock(output_dir):
        plan = begin(examples, output_dir, dataset_name=dataset_name, num_frames=num_frames,
                     image_size=image_size, videos_per_shard=videos_per_shard,
                     jpeg_quality=jpeg_quality, strict=strict)
        done = plan.total_videos - plan.todo_videos
        if progress:
            progress(done, plan.total_videos)
        if plan.todo:
            jobs = [decode_job_args(ex, num_frames, image_size, jpeg_quality, max_pixels)
                    for t in plan.todo for ex in t[3]]
            workers = min(workers or os.cpu_count() or 1, len(jobs))
            results = decode_pool.OrderedDecoder(
                video_decode.decode_job, jobs, workers=workers,
                ahead=max(2 * workers, videos_per_shard), timeout_s=decode_timeout_s)
            with results:
                for split, i, count, shard in plan.todo:
                    serialized, problems = [], []
                    for ex in shard:
                        jpegs, error = next(results)
                        if jpegs is None:
                            if strict:
                                raise PrepareError(f"--strict: {error}")
                            problems.append(problem_entry(ex, error))
                        else:
                            serialized.append(frames_record(ex, jpegs))
                        done += 1
                        if progress:
                            progress(done, plan.total_videos)
                    write_shard(output_dir, records.shard_name(split, i, count), serialized,
                                problems)
        return finish(examples, output_dir, plan, dataset_name=dataset_name,
                      vocabulary_builder=vocabulary_builder)


def records_dir_lock(output_dir):
    """Creates the records directory and holds its lock (`files.exclusive_lock`)
    while the block runs. A remote directory cannot be locked: the caller
    must not start two runs on it at once."""
    if files.is_remote(output_dir):
        files.makedirs(output_dir)
        return contextlib.nullcontext(output_dir)
    files.ensure_directory(output_dir, "records_dir")
    return files.exclusive_lock(output_dir, "--stage=prepare")


def read_problems(path):
    """The problem list beside a shard, or None if it is missing or damaged."""
    try:
        problems = json.loads(files.read_text(path))
    except (OSError, ValueError):
        return None
    return problems if isinstance(problems, list) else None


def decode_job_args(example, num_frames, image_size, jpeg_quality, max_pixels):
    """The `video_decode.decode_job` argument of one example."""
    return (example.path, num_frames, image_size, jpeg_quality, max_pixels)


def frames_record(example, jpegs):
    """The serialized frame record of a decoded example."""
    return records.frames_example(example.video_id, jpegs, example.captions)


def problem_entry(example, error):
    """An undecodable video's entry in `.problems.json` and the report."""
    return {"video_id": example.video_id, "error": error}


def write_shard(output_dir, name, serialized, problems):
    """Writes a shard's problem list, then the shard itself (atomically,
    with its checksum), so that a shard with a final name always has both."""
    write_json(os.path.join(output_dir, name + ".problems.json"), problems)
    records.write_atomically(os.path.join(output_dir, name), serialized)


def begin(examples, output_dir, *, dataset_name, num_frames, image_size, videos_per_shard,
          jpeg_quality, strict):
    """Checks `output_dir` and plans the run: the first half of prepare.

    Removes partial files, records the parameters (refusing a directory
    written with others), applies `strict` to the videos already known to
    be unusable, and verifies the shards already there: a damaged one is
    deleted and planned again.

    Returns:
        A `Plan`.

    Raises:
        PrepareError: other parameters, or `strict` and a skipped video.
    """
    records.remove_partial_files(output_dir)
    params = {"dataset": dataset_name, "num_frames": num_frames, "image_size": image_size,
              "videos_per_shard": videos_per_shard, "jpeg_quality": jpeg_quality}
    params_path = os.path.join(output_dir, PARAMS_FILE)
    if files.exists(params_path):
        old = json.loads(files.read_text(params_path))
        if old != params:
            raise PrepareError(
                f"{output_dir} holds records written with {old}, not {params}; "
                "use another --records_dir or delete it"
            )
    write_json(params_path, params)

    skipped = collections.defaultdict(list)
    for ex in examples:
        if ex.problem:
            skipped[ex.problem].append(ex.video_id)
    if strict and skipped:
        kind, ids = next(iter(skipped.items()))
        more = sum(map(len, skipped.values())) - 1
        raise PrepareError(f"--strict: video {ids[0]!r} is {kind} (and {more} more problems)")

    shards = plan_shards(examples, videos_per_shard)
    todo = []  # (split, shard index, shard count, examples)
    for split, split_shards in sorted(shards.items()):
        for i, shard in enumerate(split_shards):
            path = os.path.join(output_dir, records.shard_name(split, i, len(split_shards)))
            if not files.exists(path):
                todo.append((split, i, len(split_shards), shard))
                continue
            reason = records.verify_shard(path)
            if reason is None and read_problems(path + ".problems.json") is None:
                reason = "its .problems.json is missing or damaged"
            if reason:
                print(f"prepare: {path} is corrupt ({reason}); writing it again",
                      file=sys.stderr, flush=True)
                records.remove_shard(path)
                todo.append((split, i, len(split_shards), shard))
    return Plan(params, dict(skipped), shards, todo)


def first_problem(output_dir, plan):
    """The first problem of the planned shards that were not written, in
    the order the process pool meets them (`--strict` on Beam: shards with
    a problem are not written), or None."""
    for split, i, count, _ in plan.todo:
        path = os.path.join(output_dir, records.shard_name(split, i, count))
        if files.exists(path):
            continue
        problems = read_problems(path + ".problems.json")
        if problems:
            return problems[0]["error"]
    return None


def finish(examples, output_dir, plan, *, dataset_name, vocabulary_builder):
    """The second half of prepare, once every planned shard is written:
    `attributes.json`, the vocabulary, `prepare_report.json` and
    `dataset.json`.

    Returns:
        The report dict.
    """
    undecodable = []
    written = collections.Counter()
    for split, shards in plan.shards.items():
        for i, shard in enumerate(shards):
            name = records.shard_name(split, i, len(shards))
            problems = read_problems(os.path.join(output_dir, name + ".problems.json"))
            undecodable.extend(problems)
            written[split] += len(shard) - len(problems)

    attributes_lib.write(output_dir, [ex for ex in examples if ex.problem is None])
    train_captions = [c for ex in examples if ex.split == "train" and ex.problem != "unsafe_id"
                      for c in ex.captions]
    vocabulary = vocabulary_builder(train_captions)
    vocabulary.save(os.path.join(output_dir, VOCABULARY_FILE))
    # CIDEr-D document frequencies of the training references (the scst reward)
    ngrams.save_frequencies(
        os.path.join(output_dir, ngrams.FREQUENCIES_FILE),
        ngrams.caption_frequencies(
            [ex.captions for ex in examples if ex.split == "train" and ex.problem is None],
            vocabulary),
        vocabulary)

    skipped = plan.skipped
    report = {
        "dataset": dataset_name,
        "annotated_videos": len(examples),
        "written": dict(sorted(written.items())),
        "missing": sorted(skipped.get("missing", [])),
        "unsafe_id": sorted(skipped.get("unsafe_id", [])),
        "no_captions": sorted(skipped.get("no_captions", [])),
        "empty_references": [{"video": ex.video_id, "caption": c} for ex in examples
                             for c in ex.empty_references],
        "undecodable": undecodable,
        "vocabulary_size": len(vocabulary),
    }
    write_json(os.path.join(output_dir, REPORT_FILE), report)
    write_json(os.path.join(output_dir, DATASET_FILE), dict(
        plan.params,
        splits={s: {"videos": written[s], "shards": len(plan.shards[s])}
                for s in sorted(plan.shards)},
        vocabulary=VOCABULARY_FILE,
        max_caption_length=_suggested_length(train_captions),
    ))
    return report


def _suggested_length(captions):
    """Sequence length (with <start>/<end>) covering 95% of train captions."""
    lengths = sorted(len(tokenizer.space_out(c).split()) for c in captions)  # CJK: characters
    if not lengths:
        return 20
    return min(lengths[int(0.95 * (len(lengths) - 1))] + 2, 40)


def load_dataset_info(records_dir):
    """Reads `dataset.json`; a clear error when prepare has not run."""
    path = os.path.join(records_dir, DATASET_FILE)
    if not os.path.isfile(path):
        raise MissingInputError(
            f"{path} not found: run --stage=prepare with --records_dir={records_dir} first"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)
