"""`--stage=prepare`: decode each video once into sharded TFRecords.

Videos are decoded in parallel worker processes (PyAV + Pillow, no
TensorFlow there), each yielding `num_frames` JPEG frames of
`image_size` pixels. The parent writes shards in order, each atomically.

Resuming: a shard whose final file exists is kept and its videos are not
decoded again; the shard layout depends only on the annotations and
`videos_per_shard`, so a re-run recomputes the same layout. Per-shard
problem lists are stored beside each shard (`*.problems.json`, written
before the shard itself) so the final report is complete after a resume.

Problem videos (missing file, undecodable, empty, unsafe id) are skipped
and listed in `prepare_report.json`; with `strict=True` the first one
stops the run.
"""

import collections
import concurrent.futures
import json
import multiprocessing
import os

from etenet_tf.data import attributes as attributes_lib
from etenet_tf.data import records
from etenet_tf.data import video_decode
from etenet_tf.files import write_json

PARAMS_FILE = "prepare_params.json"
DATASET_FILE = "dataset.json"
REPORT_FILE = "prepare_report.json"
VOCABULARY_FILE = "vocab.txt"


class PrepareError(Exception):
    """Prepare cannot go on (strict mode, or inconsistent output dir)."""


def _decode_job(job):
    path, num_frames, image_size, quality = job
    try:
        return video_decode.decode_video_to_jpegs(path, num_frames, image_size, quality), None
    except video_decode.VideoDecodeError as e:
        return None, str(e)
    except Exception as e:  # a decoder crash must not kill the whole run
        return None, f"{path}: {type(e).__name__}: {e}"


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


def prepare(examples, output_dir, num_frames, image_size, *, dataset_name,
            vocabulary_builder, videos_per_shard=64, workers=None, strict=False,
            jpeg_quality=90, progress=None):
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
        progress: optional callable(done_videos, total_videos).

    Returns:
        The report dict (also written to `prepare_report.json`).
    """
    os.makedirs(output_dir, exist_ok=True)
    records.remove_partial_files(output_dir)
    params = {"dataset": dataset_name, "num_frames": num_frames, "image_size": image_size,
              "videos_per_shard": videos_per_shard, "jpeg_quality": jpeg_quality}
    params_path = os.path.join(output_dir, PARAMS_FILE)
    if os.path.exists(params_path):
        with open(params_path, encoding="utf-8") as f:
            old = json.load(f)
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
        raise PrepareError(f"--strict: video {ids[0]!r} is {kind} (and {sum(map(len, skipped.values())) - 1} more problems)")

    plan = plan_shards(examples, videos_per_shard)
    todo = []  # (split, shard index, shard count, examples)
    for split, shards in sorted(plan.items()):
        for i, shard in enumerate(shards):
            if not os.path.exists(os.path.join(output_dir, records.shard_name(split, i, len(shards)))):
                todo.append((split, i, len(shards), shard))
    total = sum(len(s) for shards in plan.values() for s in shards)
    done = total - sum(len(t[3]) for t in todo)
    if progress:
        progress(done, total)

    if todo:
        workers = workers or os.cpu_count() or 1
        jobs = [(ex.path, num_frames, image_size, jpeg_quality) for t in todo for ex in t[3]]
        context = multiprocessing.get_context("spawn")  # never fork a process holding TF
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = pool.map(_decode_job, jobs, chunksize=1)
            for split, i, count, shard in todo:
                serialized, problems = [], []
                for ex in shard:
                    jpegs, error = next(results)
                    if jpegs is None:
                        if strict:
                            raise PrepareError(f"--strict: {error}")
                        problems.append({"video_id": ex.video_id, "error": error})
                    else:
                        serialized.append(records.frames_example(ex.video_id, jpegs, ex.captions))
                    done += 1
                    if progress:
                        progress(done, total)
                name = records.shard_name(split, i, count)
                write_json(os.path.join(output_dir, name + ".problems.json"), problems)
                records.write_atomically(os.path.join(output_dir, name), serialized)

    undecodable = []
    written = collections.Counter()
    for split, shards in plan.items():
        for i, shard in enumerate(shards):
            name = records.shard_name(split, i, len(shards))
            with open(os.path.join(output_dir, name + ".problems.json"), encoding="utf-8") as f:
                problems = json.load(f)
            undecodable.extend(problems)
            written[split] += len(shard) - len(problems)

    attributes_lib.write(output_dir, [ex for ex in examples if ex.problem is None])
    train_captions = [c for ex in examples if ex.split == "train" and ex.problem != "unsafe_id"
                      for c in ex.captions]
    vocabulary = vocabulary_builder(train_captions)
    vocabulary.save(os.path.join(output_dir, VOCABULARY_FILE))

    report = {
        "dataset": dataset_name,
        "annotated_videos": len(examples),
        "written": dict(sorted(written.items())),
        "missing": sorted(skipped.get("missing", [])),
        "unsafe_id": sorted(skipped.get("unsafe_id", [])),
        "no_captions": sorted(skipped.get("no_captions", [])),
        "undecodable": undecodable,
        "vocabulary_size": len(vocabulary),
    }
    write_json(os.path.join(output_dir, REPORT_FILE), report)
    write_json(os.path.join(output_dir, DATASET_FILE), dict(
        params,
        splits={s: {"videos": written[s], "shards": len(plan[s])} for s in sorted(plan)},
        vocabulary=VOCABULARY_FILE,
        max_caption_length=_suggested_length(train_captions),
    ))
    return report


def _suggested_length(captions):
    """Sequence length (with <start>/<end>) covering 95% of train captions."""
    lengths = sorted(len(c.split()) for c in captions)
    if not lengths:
        return 20
    return min(lengths[int(0.95 * (len(lengths) - 1))] + 2, 40)


def load_dataset_info(records_dir):
    """Reads `dataset.json`; a clear error when prepare has not run."""
    path = os.path.join(records_dir, DATASET_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: run --stage=prepare with --records_dir={records_dir} first"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)
