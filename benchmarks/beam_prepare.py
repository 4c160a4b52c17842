"""10. Prepare: videos/s of the local process pool vs Beam's DirectRunner,
the same videos and the same number of worker processes."""

import os
import shutil
import time

from benchmarks import prepare_decode
from etenet_tf.data import prepare as prepare_lib
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.text import tokenizer, vocabulary

INSTALL = 'apache-beam not installed (pip install -e ".[beam]")'


def _videos(ctx, directory):
    """The decodable clips, each `beam_repeats` times under its own name."""
    paths, source = prepare_decode.clips(ctx)
    paths = [p for p in paths if prepare_decode._decodes(p)]
    os.makedirs(directory)
    names = []
    for r in range(ctx.beam_repeats):
        for path in paths:
            name = f"r{r}_{os.path.basename(path)}"
            try:
                os.link(path, os.path.join(directory, name))
            except OSError:
                shutil.copy(path, os.path.join(directory, name))
            names.append(name)
    return names, source, len(paths)


def _tree(root):
    found = {}
    for name in sorted(os.listdir(root)):
        if not name.startswith("."):
            with open(os.path.join(root, name), "rb") as f:
                found[name] = f.read()
    return found


def run(ctx):
    workers = ctx.beam_workers
    title = f"prepare: process pool vs Beam DirectRunner, {workers} worker processes each"
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        return {"title": title, "skipped": INSTALL}
    from etenet_tf.beam import prepare as beam_prepare
    from etenet_tf.jobs import ExperimentConfig

    work = os.path.join(ctx.work_dir, "beam_prepare")
    shutil.rmtree(work, ignore_errors=True)
    names, source, clips = _videos(ctx, os.path.join(work, "videos"))
    table = os.path.join(work, "ann.csv")
    with open(table, "w", encoding="utf-8") as f:
        f.write("video,caption,split\n" + "".join(f"{n},a clip,train\n" for n in names))
    examples = load_custom(table, os.path.join(work, "videos"))
    frames, size, per_shard = 16, ctx.caption_image_size, ctx.beam_videos_per_shard

    def build(captions):
        return vocabulary.Vocabulary.build(tokenizer.words_of(captions), 1)

    seconds = {}
    start = time.perf_counter()
    prepare_lib.prepare(examples, os.path.join(work, "pool"), frames, size,
                        dataset_name="custom", vocabulary_builder=build,
                        videos_per_shard=per_shard, workers=workers)
    seconds["pool"] = time.perf_counter() - start

    config = ExperimentConfig.from_flat(dict(
        dataset="custom", records_dir=os.path.join(work, "beam"), frames=frames,
        image_size=size, videos_per_shard=per_shard, workers=workers, runner="beam"))
    start = time.perf_counter()
    options = beam_prepare.check(config)
    beam_prepare.prepare(examples, config, options, build)
    seconds["beam"] = time.perf_counter() - start

    identical = _tree(os.path.join(work, "pool")) == _tree(os.path.join(work, "beam"))
    videos = len(names)
    return {
        "title": title,
        "a": f"{videos / seconds['pool']:.2f} videos/s process pool",
        "b": f"{videos / seconds['beam']:.2f} videos/s Beam DirectRunner",
        "ratio": seconds["pool"] / seconds["beam"], "target": "(no target: reported)",
        "met": None,
        "details": {
            "videos": videos, "distinct_clips": clips, "source": source, "workers": workers,
            "frames": frames, "image_size": size, "videos_per_shard": per_shard,
            "pool_seconds": seconds["pool"], "beam_seconds": seconds["beam"],
            "beam_over_pool_throughput": seconds["pool"] / seconds["beam"],
            "identical_files": identical,
        },
    }
