"""`--stage=prepare --runner=beam`: the same records, decoded by a pipeline.

The launcher (this process) does what the local runner does before and
after decoding, with the same functions (`etenet_tf.data.prepare.begin`
and `finish`): it checks the records directory, plans the shards (the
layout depends only on the annotations and `--videos_per_shard`, so it
equals the local one), keeps the intact shards of an earlier run, and at
the end writes `vocab.txt`, `attributes.json`, `prepare_report.json` and
`dataset.json`. The pipeline in between decodes and writes the planned
shards:

    work files --read--> videos --Reshuffle--> Decode (one video each:
    `video_decode.decode_job`, `prepare.frames_record`) --GroupByKey on
    the shard name--> WriteShard (`prepare.write_shard`: records in plan
    order, `.problems.json`, `.sha256`, atomic rename)

Why not `WriteToTFRecord`: its shards are named and filled by the runner
(`-SSSSS-of-NNNNN`, any video in any shard), and it writes no checksum or
problem list. Grouping by the planned shard and writing each with the
package's own writer gives the very files of the local runner
(`<split>-<i>-of-<n>.tfrecord` with the same videos in the same order,
byte for byte), so pretrain, the feature cache and a later resume, on
either runner, read Beam's output unchanged. A shard is one unit of work
(64 videos by default), so a retried bundle rewrites it whole and
atomically.

Bad videos become entries of their shard's `.problems.json`, as in the
local runner, and never fail the pipeline. `--strict` cannot stop a
distributed pipeline at the first bad video: shards holding one are not
written (only their problem list), and the run then fails with the
first problem in the local runner's order, the same line it would print.

Paths may be remote (`gs://...`): the records are written through
`tf.io.gfile` by the workers themselves and videos are read through it, so
a Dataflow job needs no local disk but its temporary files. A remote
records directory is not locked: run one prepare on it at a time.
"""

import os
import time

from etenet_tf.beam import runtime

beam = runtime.require_beam()  # this module is imported for --runner=beam only

from apache_beam.metrics.metric import Metrics  # noqa: E402

from etenet_tf import files  # noqa: E402
from etenet_tf.data import prepare as prepare_lib  # noqa: E402
from etenet_tf.data import records  # noqa: E402
from etenet_tf.data.examples import VideoExample  # noqa: E402

WORK_DIR = ".beam-work"  # in the records directory while the pipeline runs


def check(config):
    """Checks, before any work, that the run can start: Beam installed, its
    options valid. Returns the `PipelineOptions`."""
    return runtime.pipeline_options(config.beam, config.data.workers)


def prepare(examples, config, options, vocabulary_builder):
    """Writes the records of `examples` as `prepare_lib.prepare` does, with
    the decoding in a Beam pipeline.

    Args:
        examples: `VideoExample`s of the data source.
        config: the `ExperimentConfig` (its `data` section).
        options: `check(config)`.
        vocabulary_builder: as for `prepare_lib.prepare`.

    Returns:
        The report (also `prepare_report.json`).

    Raises:
        prepare_lib.PrepareError: other parameters in the directory, or
            `--strict` and a bad video.
        runtime.PipelineError: the pipeline failed (finished shards are
            kept: re-run the same command).
    """
    data = config.data
    out = data.records_dir
    jpeg_quality = 90
    with prepare_lib.records_dir_lock(out):
        plan = prepare_lib.begin(examples, out, dataset_name=data.dataset,
                                 num_frames=data.frames, image_size=data.image_size,
                                 videos_per_shard=data.videos_per_shard,
                                 jpeg_quality=jpeg_quality, strict=data.strict)
        kept = plan.total_videos - plan.todo_videos
        print(f"prepare: {plan.todo_videos} videos in {len(plan.todo)} shards to decode on Beam "
              f"({runtime.describe(options)})" + (f"; {kept} videos in finished shards kept"
                                                   if kept else ""), flush=True)
        for hint in (runtime.needs_package_hint(options),
                     runtime.local_paths_hint(options, [ex.path for t in plan.todo for ex in t[3]],
                                              "--video_dir")):
            if hint:
                print(hint, flush=True)
        if plan.todo:
            _run(plan, data, out, options, jpeg_quality)
        if data.strict:
            problem = prepare_lib.first_problem(out, plan)
            if problem:
                raise prepare_lib.PrepareError(f"--strict: {problem}")
        return prepare_lib.finish(examples, out, plan, dataset_name=data.dataset,
                                  vocabulary_builder=vocabulary_builder)


def _run(plan, data, out, options, jpeg_quality):
    items = [[records.shard_name(split, i, count), position, ex.video_id, ex.path, ex.captions]
             for split, i, count, shard in plan.todo for position, ex in enumerate(shard)]
    work_dir = os.path.join(out, WORK_DIR)
    work = runtime.stage_work(work_dir, items)

    def build(pipeline):
        _ = (pipeline
             | "Work files" >> beam.Create(work)
             | "Videos" >> beam.FlatMap(runtime.read_work)
             | "Spread" >> beam.Reshuffle()
             | "Decode" >> beam.ParDo(DecodeVideo(data.frames, data.image_size, jpeg_quality,
                                                  data.max_frame_pixels, data.decode_timeout_s))
             | "By shard" >> beam.GroupByKey()
             | "Write shards" >> beam.ParDo(WriteShard(out, data.strict)))

    start = time.time()
    counts = runtime.run(build, options, advice="re-run the same command: finished shards are "
                                                "kept")
    runtime.remove_work(work_dir)
    if counts:
        print(f"prepare: Beam decoded {counts.get('videos_decoded', 0)} videos "
              f"({counts.get('videos_undecodable', 0)} undecodable) and wrote "
              f"{counts.get('shards_written', 0)} shards in {time.time() - start:.1f}s",
              flush=True)


class DecodeVideo(beam.DoFn):
    """One planned video -> `(shard name, (position, record or None,
    problem or None))`, with the local runner's per-video functions."""

    def __init__(self, num_frames, image_size, jpeg_quality, max_pixels, timeout_s):
        super().__init__()
        self.args = (num_frames, image_size, jpeg_quality, max_pixels)
        self.decoding = runtime.Decoding(timeout_s)
        self.decoded = Metrics.counter(runtime.NAMESPACE, "videos_decoded")
        self.undecodable = Metrics.counter(runtime.NAMESPACE, "videos_undecodable")

    def setup(self):
        self.decoding.setup()

    def teardown(self):
        self.decoding.teardown()

    def process(self, item):
        name, position, video_id, path, captions = item
        example = VideoExample(video_id, "", captions, path)
        jpegs, error = self.decoding.decode(prepare_lib.decode_job_args(example, *self.args))
        if jpegs is None:
            self.undecodable.inc()
            yield name, (position, None, prepare_lib.problem_entry(example, error))
        else:
            self.decoded.inc()
            yield name, (position, prepare_lib.frames_record(example, jpegs), None)


class WriteShard(beam.DoFn):
    """`(shard name, [(position, record, problem), ...])` -> the shard and
    its side files, records in plan order (`prepare.write_shard`). With
    `strict`, a shard with a problem is not written, only its problems."""

    def __init__(self, output_dir, strict):
        super().__init__()
        self.output_dir = output_dir
        self.strict = strict
        self.written = Metrics.counter(runtime.NAMESPACE, "shards_written")

    def process(self, element):
        name, entries = element
        entries = sorted(entries, key=lambda e: e[0])
        serialized = [record for _, record, _ in entries if record is not None]
        problems = [problem for _, _, problem in entries if problem is not None]
        if self.strict and problems:
            files.write_json(os.path.join(self.output_dir, name + ".problems.json"), problems)
            return
        prepare_lib.write_shard(self.output_dir, name, serialized, problems)
        self.written.inc()
        yield name
