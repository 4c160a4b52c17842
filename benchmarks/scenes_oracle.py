"""What the scenes captioner says when its encoder sees perfectly: oracle features.

    python -m benchmarks.scenes_oracle                      # 3 seeds, both layouts
    python -m benchmarks.scenes_oracle --layouts=cells --seeds=0 [-- main.py flags]

Every number on the scenes benchmark so far mixes two questions: does the
encoder see what the caption must say, and can the decoder say it? This
benchmark removes the first. It writes, for every clip, the features a
perfect encoder would give (from the clip's scene, regenerated from its
scenes seed, at the frames `prepare` samples), in the shape the model's
encoder gives (`[T, G, G, C]`), and trains and evaluates the same decoder
on them with the package's own engines: the pretrain stage's trainer and
validation (`training.stages`), the best checkpoint by the preset's
metric, beam search and scoring (`evaluation.evaluate_model` on feature
records). Whatever the decoder gets wrong here, no encoder can fix.

An object is 18 numbers: its colour (one-hot of 7), shape (one-hot of 5)
and size (one-hot of 2), where it is (x, y as fractions of the side), its
radius now (it changes when it grows or shrinks), and 1. The rest of the
encoder's channels are 0. Two layouts:

    cells:   each object is added into the grid cell that holds its centre
             in that frame (objects that share a cell are summed): a
             perfect encoder with the preset's grid.
    objects: object k in cell k, whichever cell holds it (its place is
             in its x, y): one memory slot per object, no sharing.

The training is that of `scenes_quality`'s `standin_data3000_e60` (the best
configuration found with an encoder: 3000 clips, 60 epochs in batches of
64, picked by validation CIDEr) unless flags after `--` change it; its
records are those `scenes_quality` prepares (prepared here when missing).
Per layout and seed, `<work_dir>/<layout>_seed<seed>/quality.json` keeps the
result and `predictions_<split>.json` its captions (the same command
again does only what is missing; a result saved before the event errors
were measured is scored again from its best checkpoint, not trained
again); the JSON summary holds min / median / max over seeds on the test
split and on clips of a generation seed training never saw, with
`scenes_mentions`' rates of which object the captions name, and its
`event_summary` what they get wrong about the events
(`scenes_mentions.EVENT_RATES`: the first event's action by kind, whether
the caption has as many events as the clip, the second event's actor and
action).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import quality, scenes_mentions, scenes_quality  # noqa: E402
from etenet_tf.data import scenes  # noqa: E402

ROOT = quality.ROOT
LAYOUTS = ("cells", "objects")
OBJECT_DIM = 18


def object_vector(obj, state, size):
    """The 18 numbers of one object in one frame."""
    x, y, r = state
    vector = np.zeros(OBJECT_DIM, np.float32)
    vector[list(scenes.COLOURS).index(obj["colour"])] = 1
    vector[7 + scenes.SHAPES.index(obj["shape"])] = 1
    vector[12 + list(scenes.SIZES).index(obj["size"])] = 1
    vector[14:] = (x / size, y / size, r / size, 1.0)
    return vector


def oracle_features(scene, *, layout, num_frames, grid, channels, source_frames=scenes.FRAMES,
                    size=scenes.SIZE):
    """float32 `[num_frames, grid, grid, channels]`: a perfect encoder's view
    of `scene` at the frames `prepare` samples from its `source_frames`."""
    from etenet_tf.data import video_decode
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    objects = scene["objects"]
    if channels < OBJECT_DIM or (layout == "objects" and len(objects) > grid * grid):
        raise ValueError(f"{channels} channels x {grid}x{grid} cells cannot hold "
                         f"{len(objects)} objects of {OBJECT_DIM} numbers")
    states = scenes.object_states(scene, source_frames)
    features = np.zeros((num_frames, grid, grid, channels), np.float32)
    for t, index in enumerate(video_decode.sample_indices(source_frames, num_frames)):
        for k, (obj, state) in enumerate(zip(objects, states[index])):
            if layout == "cells":
                row, col = scenes.cell_of(state[0], state[1], size, grid)
            else:
                row, col = divmod(k, grid)
            features[t, row, col, :OBJECT_DIM] += object_vector(obj, state, size)
    return features


def write_oracle_records(records_dir, out_dir, scenes_seed, *, layout, num_frames, grid,
                         channels, splits=("train", "val", "test")):
    """Feature records (`records.features_example`, one shard per frame
    shard, same names) of the clips of `records_dir`; shards already there
    are kept. Returns the shards written."""
    import tensorflow as tf

    from etenet_tf.data import records
    os.makedirs(out_dir, exist_ok=True)
    records.remove_partial_files(out_dir)
    written = []
    for split in splits:
        for source in records.list_shards(records_dir, split):
            out = os.path.join(out_dir, os.path.basename(source))
            if os.path.exists(out) and not records.verify_shard(out):
                continue

            def serialized(source=source):
                for example in tf.data.TFRecordDataset(source).map(records.parse_frames):
                    video = example["video_id"].numpy().decode("utf-8")
                    scene = scenes.scene_of_clip(video, scenes_seed, scenes.SIZE)
                    yield records.features_example(
                        video, oracle_features(scene, layout=layout, num_frames=num_frames,
                                               grid=grid, channels=channels),
                        list(example["captions"].numpy()))

            records.write_atomically(out, serialized())
            written.append(out)
    return written


def run_seed(config, *, layout, work_dir, unseen_records, unseen_seed, trained=None):
    """Writes the oracle features of the records (when missing), pretrains
    the decoder on them, and scores its best checkpoint on their test split
    and on the unseen clips'. With `trained` (an earlier `quality.json`
    content) it only scores the best checkpoint again, keeping its times.
    Returns the `quality.json` content; each split's captions are also
    written to `<model_dir>/predictions_<split>.json`."""
    import keras

    from etenet_tf.data import attributes as attributes_data
    from etenet_tf.data import records
    from etenet_tf.evaluation import evaluate_model
    from etenet_tf.files import write_json
    from etenet_tf.model.config import build_captioner
    from etenet_tf.run_dir import RunDir
    from etenet_tf.training import stages
    from etenet_tf.training import strategy as strategy_lib
    from etenet_tf.training.objectives import TeacherForcing
    training = config.training
    prepared = stages.load_prepared(config.data)
    strategy = strategy_lib.make_strategy(training.strategy)
    run = RunDir(config.model_dir)
    keras.utils.set_random_seed(training.seed)
    with strategy.scope():
        model = build_captioner(stages.records_model_config(config.model, prepared),
                                prepared.vocabulary.tokens)
    num_frames, grid, _, channels = model.feature_shape
    shape = dict(layout=layout, num_frames=num_frames, grid=grid, channels=channels)
    features_dir = os.path.join(work_dir, f"features_{layout}")
    unseen_dir = os.path.join(work_dir, f"unseen_features_{layout}")
    write_oracle_records(config.data.records_dir, features_dir, config.data.scenes_seed, **shape)
    write_oracle_records(unseen_records, unseen_dir, unseen_seed, splits=("test",), **shape)
    if trained is None:
        start = time.time()
        with strategy.scope():
            trainer = stages.make_trainer(
                run, "pretrain", model, strategy, training, prepared,
                objective=TeacherForcing(training.label_smoothing), kind="features",
                decoder_learning_rate=training.learning_rate)
            stages.fit_stage(trainer, training, prepared, features_dir)
        seconds = {"pretrain": time.time() - start}
    else:
        seconds = trained["seconds"]
    result = {"seconds": seconds, "pretrain": {}, "mentions": {}, "events": {}}
    run.restore_best(model, "pretrain")
    for split, directory, records_dir, seed in (
            ("test", features_dir, config.data.records_dir, config.data.scenes_seed),
            ("unseen", unseen_dir, unseen_records, unseen_seed)):
        predictions, scores = evaluate_model(
            model, records.list_shards(directory, "test"), kind="features", image_size=None,
            decoding=config.decoding, batch_size=training.eval_batch_size,
            attributes=attributes_data.load(records_dir))
        write_json(os.path.join(config.model_dir, f"predictions_{split}.json"), predictions)
        result["pretrain"][split] = scores
        result["mentions"][split] = scenes_mentions.mentions(predictions, seed, scenes.SIZE)
        result["events"][split] = scenes_mentions.event_errors(predictions, seed, scenes.SIZE)
    return result


def summarise_events(runs):
    """min / median / max over seeds of `scenes_mentions.EVENT_RATES` (in
    `quality.summarise`'s form, stage "events")."""
    rates = {variant: {seed: {"events": {split: scenes_mentions.event_rates(errors)
                                         for split, errors in run["events"].items()}}
                       for seed, run in by_seed.items()}
             for variant, by_seed in runs.items()}
    return quality.summarise(rates, scenes_mentions.EVENT_RATES)


def parse(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--flagfile", default=os.path.join(ROOT, "flags", "scenes.cfg"))
    p.add_argument("--records_work_dir", default=os.path.join(ROOT, "runs", "scenes_quality"),
                   help="where scenes_quality keeps (and this prepares) the records")
    p.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "scenes_oracle"))
    p.add_argument("--unseen_seed", type=int, default=scenes_quality.BENCHMARK.unseen_seed)
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "scenes_oracle.json"))
    args = p.parse_args(argv)
    unknown = set(args.layouts.split(",")) - set(LAYOUTS)
    if unknown:
        p.error(f"unknown layout(s) {', '.join(sorted(unknown))}; choose from "
                f"{', '.join(LAYOUTS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, not {args.seeds!r}")
    # the flags after `--` win over LONG_RUN's (one of each name, the last)
    by_name = {flag.split("=")[0]: flag for flag in [*scenes_quality.LONG_RUN, *extra]}
    args.main_flags = list(by_name.values())
    return args


def main(argv=None):
    from etenet_tf.cli import flags as cli_flags
    from etenet_tf.files import write_json
    args = parse(argv)
    benchmark = scenes_quality.BENCHMARK
    prepare_args = argparse.Namespace(flagfile=args.flagfile, work_dir=args.records_work_dir,
                                      unseen_seed=args.unseen_seed)
    os.makedirs(args.records_work_dir, exist_ok=True)
    records_dir, unseen_records = quality.prepare(
        benchmark, prepare_args, quality.prepare_key(benchmark, args.main_flags))
    runs = {}
    for layout in args.layouts.split(","):
        for seed in args.seeds:
            model_dir = os.path.join(args.work_dir, f"{layout}_seed{seed}")
            saved = os.path.join(model_dir, "quality.json")
            trained = None
            if os.path.exists(saved):
                with open(saved, encoding="utf-8") as f:
                    trained = json.load(f)
            if trained is None or "events" not in trained:  # (older runs lack it)
                print(f"oracle {layout}, seed {seed}: "
                      f"{'training' if trained is None else 'scoring again'} ...",
                      file=sys.stderr, flush=True)
                config = cli_flags.parse(["main.py", f"--flagfile={args.flagfile}",
                                          *args.main_flags, f"--records_dir={records_dir}",
                                          f"--model_dir={model_dir}", f"--seed={seed}"])
                trained = run_seed(config, layout=layout, work_dir=args.work_dir,
                                   unseen_records=unseen_records, unseen_seed=args.unseen_seed,
                                   trained=trained)
                write_json(saved, trained)
            runs.setdefault(f"oracle_{layout}", {})[seed] = trained
    table = quality.summarise(runs, scenes_quality.METRICS)
    events = summarise_events(runs)
    write_json(args.output, {"settings": vars(args), "runs": runs, "summary": table,
                             "event_summary": events})
    print(quality.format_table(table, scenes_quality.METRICS))
    print()
    print(quality.format_table(events, scenes_mentions.EVENT_RATES))
    print(f"\n(min / median / max over seeds {args.seeds}; JSON saved to {args.output})")
    return table


if __name__ == "__main__":
    main()
