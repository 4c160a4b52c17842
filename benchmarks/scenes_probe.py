"""Is what a scenes caption must say in the features the decoder sees?

    python -m benchmarks.scenes_probe --run=runs/scenes_quality/preset_seed0 \
        --records=runs/scenes_quality/records [--output=probe.json]

Reads a trained run's feature cache (`<run>/features`: the frozen encoder's
pooled cells of every frame, exactly what pretrain's decoder attends over),
and fits kernel ridge classifiers (linear and RBF kernels, one-hot targets,
the ridge strength chosen on the last 100 training clips) from the features
of a clip to each attribute of its first event: the action (9), the
subject's colour (7), shape (5) and size (2), the region (4), and whether a
second event follows. Trained on the cache's `train` split, scored on its
`val` split, on the frames as they are and with frame-to-frame differences
appended. Prints each accuracy beside the majority class's.

A second, local probe asks whether an object's look survives in the cell
that holds it: for every object alone in its grid cell at the first frame
(its position regenerated from the clip's scenes seed), the features of
that one cell and frame, to the object's shape, colour and size. The
whole-clip probes must also find which of 2-3 objects is the subject; this
one does not, so it bounds what the encoder keeps of an object's look.

A probe reads what a simple classifier can read off the features given
the same clips; the decoder must do more (name the right object among 2-3
and word it), so a slot the probes cannot read is one the captions will
not get right either, whatever the decoder. Deterministic (closed form).
"""

import argparse
import glob
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from etenet_tf.data import scenes  # noqa: E402

HOLDOUT = 100  # training clips held out to choose the ridge strength
STRENGTHS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def load_features(cache_dir, split):
    """`(video ids, float32 [N, T, G, G, C])` of a feature cache's split."""
    import tensorflow as tf

    from etenet_tf.data import records
    ids, features = [], []
    for path in sorted(glob.glob(os.path.join(cache_dir, f"{split}-*.tfrecord"))):
        for example in tf.data.TFRecordDataset(path).map(records.parse_features):
            ids.append(example["video_id"].numpy().decode("utf-8"))
            features.append(example["features"].numpy())
    if not ids:
        raise SystemExit(f"error: no {split} features in {cache_dir}: pass the directory of a "
                         "run that pretrained with the feature cache (it holds features/)")
    return ids, np.stack(features)


def slots(attributes):
    """The probed targets of one clip's scenes attributes."""
    size, colour, shape = attributes["subject"].split()
    return {"action": attributes["action"], "subject colour": colour, "subject shape": shape,
            "subject size": size, "region": attributes["region"],
            "two events": attributes["order"] != "none"}


def object_cells(ids, features, seed, size):
    """`(float32 [M, C], [object dict] * M)`: the first frame's cell of every
    object that is alone in its cell, over clips `ids` (scenes file names)
    of generation `seed` and frame side `size`."""
    grid = features.shape[2]
    cells, objects = [], []
    for video, clip in zip(ids, features):
        scene = scenes.scene_of_clip(video, seed, size)
        where = [scenes.cell_of(o["x"], o["y"], size, grid) for o in scene["objects"]]
        for obj, cell in zip(scene["objects"], where):
            if where.count(cell) == 1:
                cells.append(clip[0, cell[0], cell[1]])
                objects.append(obj)
    return np.stack(cells), objects


def _kernel(kind, reference):
    def squared(a, b):
        return (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    if kind == "linear":
        return lambda a, b: a @ b.T / a.shape[1]
    scale = float(np.median(squared(reference[:200], reference[:200]))) or 1.0
    return lambda a, b: np.exp(-squared(a, b) / scale)


def _ridge(gram, cross, labels, classes, strength):
    targets = np.stack([labels == c for c in classes], 1).astype(np.float64)
    mean = targets.mean(0)
    dual = np.linalg.solve(gram + strength * np.eye(len(gram)), targets - mean)
    return np.asarray(classes)[(cross @ dual + mean).argmax(1)]


def probe(train_x, train_y, test_x, test_y, kind="linear"):
    """Accuracy of a kernel ridge classifier on `test`, and its strength."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    classes = sorted(set(train_y.tolist()))
    kernel = _kernel(kind, train_x)
    gram = kernel(train_x, train_x)
    fit = len(train_x) - HOLDOUT
    if fit < 2:
        raise ValueError(f"a probe needs more than {HOLDOUT + 1} training clips")
    chosen = max(STRENGTHS, key=lambda s: (np.mean(
        _ridge(gram[:fit, :fit], gram[fit:, :fit], train_y[:fit], classes, s)
        == train_y[fit:]), -s))
    predicted = _ridge(gram, kernel(test_x, train_x), train_y, classes, chosen)
    return float(np.mean(predicted == test_y)), chosen


def _views(features):
    flat = features.reshape(len(features), features.shape[1], -1)
    return {"frames": flat.reshape(len(flat), -1),
            "frames + differences": np.concatenate(
                [flat, np.diff(flat, axis=1)], 1).reshape(len(flat), -1)}


def _standardise(a, b):
    mean, std = a.mean(0), a.std(0) + 1e-6
    return ((a - mean) / std).astype(np.float32), ((b - mean) / std).astype(np.float32)


def _probe_rows(view, a, train_y, b, val_y):
    rows = []
    for kind in ("linear", "rbf"):
        for slot in train_y[0]:
            truth = [y[slot] for y in val_y]
            accuracy, strength = probe(a, [y[slot] for y in train_y], b, truth, kind)
            majority = max(truth.count(v) for v in set(truth)) / len(truth)
            rows.append({"view": view, "kernel": kind, "slot": slot, "accuracy": accuracy,
                         "majority": majority, "strength": strength})
    return rows


def run(run_dir, records_dir, scenes_seed=4321, scenes_size=scenes.SIZE):
    with open(os.path.join(records_dir, "attributes.json"), encoding="utf-8") as f:
        attributes = json.load(f)["videos"]
    cache = os.path.join(run_dir, "features")
    (train_ids, train), (val_ids, val) = load_features(cache, "train"), load_features(cache,
                                                                                     "val")
    train_y = [slots(attributes[v]) for v in train_ids]
    val_y = [slots(attributes[v]) for v in val_ids]
    rows = []
    train_views, val_views = _views(train), _views(val)
    for view in train_views:
        a, b = _standardise(train_views[view], val_views[view])
        rows += _probe_rows(view, a, train_y, b, val_y)
    (a, train_objects), (b, val_objects) = (object_cells(train_ids, train, scenes_seed,
                                                         scenes_size),
                                            object_cells(val_ids, val, scenes_seed, scenes_size))
    a, b = _standardise(a, b)
    look = lambda o: {"object shape": o["shape"], "object colour": o["colour"],  # noqa: E731
                      "object size": o["size"]}
    rows += _probe_rows("object's own cell", a, [look(o) for o in train_objects], b,
                        [look(o) for o in val_objects])
    return {"run": os.path.abspath(run_dir), "feature_shape": list(train.shape[1:]),
            "train_clips": len(train_ids), "val_clips": len(val_ids),
            "train_objects": len(train_objects), "val_objects": len(val_objects),
            "probes": rows}


def add_generation_arguments(parser):
    """`--scenes_seed` and `--scenes_size`: what the clips were generated with."""
    parser.add_argument("--scenes_seed", type=int, default=4321,
                        help="the clips' generation seed (main.py's --scenes_seed)")
    parser.add_argument("--scenes_size", type=int, default=scenes.SIZE,
                        help="the side the clips were generated at")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory holding features/")
    parser.add_argument("--records", required=True, help="its records (attributes.json)")
    add_generation_arguments(parser)
    parser.add_argument("--output", default="")
    args = parser.parse_args(argv)
    result = run(args.run, args.records, args.scenes_seed, args.scenes_size)
    print(f"features {result['feature_shape']} of {result['train_clips']} training clips; "
          f"scored on {result['val_clips']} val clips (objects alone in their cell: "
          f"{result['train_objects']} / {result['val_objects']})")
    print(f"{'view':22} {'kernel':7} {'slot':15} {'accuracy':>8} {'majority':>8}")
    for row in result["probes"]:
        print(f"{row['view']:22} {row['kernel']:7} {row['slot']:15} {row['accuracy']:8.3f} "
              f"{row['majority']:8.3f}")
    if args.output:
        from etenet_tf.files import write_json
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
