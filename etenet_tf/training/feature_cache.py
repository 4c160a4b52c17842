"""Pretrain feature cache: frozen-encoder features computed once.

With the encoder frozen, every pretrain epoch would run the CNN over the
same frames again. Instead its per-frame features are written once as
feature records (`records.features_example`) under
`<model_dir>/features/`, and pretrain reads those.

`cache.json` records what the features came from (encoder, image size,
grid, feature layer, records, and a fingerprint of the encoder weights); a cache that does not
match is rebuilt, so changing the encoder can never train on stale
features. Shards are written atomically, so an interrupted build resumes,
and each is checked against its checksum before it is used again: a
damaged cache shard is computed again.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from etenet_tf.data import pipeline, records
from etenet_tf.files import write_json


def encoder_fingerprint(encoder):
    """Hash of all encoder weights (BatchNorm statistics included)."""
    digest = hashlib.sha256()
    for w in encoder.weights:
        digest.update(np.ascontiguousarray(w.numpy()).tobytes())
    return digest.hexdigest()[:16]


def build_cache(model, records_dir, cache_dir, splits, *, batch_size=32, image_size=None,
                progress=None):
    """Writes feature shards for `splits` unless a matching cache exists.

    Args:
        model: the captioner (its encoder is used in inference mode).
        records_dir: frame records from prepare.
        cache_dir: output directory.
        splits: split names to cache.
        batch_size: videos per encoder batch.
        image_size: frame side expected by the encoder.
        progress: optional callable(message).

    Returns:
        True if features were computed, False if the cache was reused.
    """
    encoder = model.encoder
    meta = {
        "encoder": encoder.encoder_name,
        "image_size": encoder.image_size,
        "spatial_grid": encoder.spatial_grid,
        "feature_layer": encoder.feature_layer,
        "records_dir": os.path.abspath(records_dir),
        "fingerprint": encoder_fingerprint(model.encoder),
        "splits": sorted(splits),
    }
    meta_path = os.path.join(cache_dir, "cache.json")
    sources = [p for split in splits for p in records.list_shards(records_dir, split)]
    outputs = [os.path.join(cache_dir, os.path.basename(p)) for p in sources]
    if os.path.isfile(meta_path):
        try:
            with open(meta_path, encoding="utf-8") as f:
                matches = json.load(f) == meta
        except ValueError:
            matches = False
        if matches:
            damaged = [p for p in outputs if records.verify_shard(p)]
            if not damaged:
                return False
            for path in damaged:
                if progress:
                    progress(f"feature cache shard {path} is damaged; computing it again")
                records.remove_shard(path)
        else:
            os.remove(meta_path)
            for path in tf.io.gfile.glob(os.path.join(cache_dir, "*.tfrecord")):
                records.remove_shard(path)
    os.makedirs(cache_dir, exist_ok=True)
    records.remove_partial_files(cache_dir)
    encode = tf.function(model.encode, reduce_retracing=True)
    for path, out in zip(sources, outputs):
        if os.path.exists(out):
            if not records.verify_shard(out):
                continue
            records.remove_shard(out)
        ds = pipeline.eval_dataset([path], "frames", batch_size, image_size=image_size)

        def serialized(ds=ds):
            for batch in ds:
                features = encode(batch["frames"]).numpy()
                for vid, feats, refs in zip(batch["video_id"].numpy(), features,
                                            batch["references"].numpy()):
                    yield records.features_example(
                        vid.decode("utf-8"), feats, [r for r in refs if r]
                    )

        count = records.write_atomically(out, serialized())
        if progress:
            progress(f"cached features of {count} videos -> {out}")
    write_json(meta_path, meta)
    return True
