"""The pretrain feature cache: reused when it matches, repaired when damaged."""

import json
import os

import numpy as np
import tensorflow as tf

from etenet_tf.run_dir import RunDir

from helpers import TINY


def test_cache_matches_the_frozen_encoder_not_the_finetuned_one(trained_model_dir):
    from etenet_tf.training import feature_cache
    run = RunDir(trained_model_dir.model_dir)
    pre, fine = run.load_trained_model("pretrain"), run.load_trained_model("finetune")
    # the cache was computed before pretrain trained: a frozen encoder still matches it
    cache = json.load(open(os.path.join(run.features_dir, "cache.json")))
    assert feature_cache.encoder_fingerprint(pre.encoder) == cache["fingerprint"]
    assert feature_cache.encoder_fingerprint(fine.encoder) != cache["fingerprint"]
    assert cache["spatial_grid"] == 2 and cache["feature_layer"] == TINY["feature_layer"]


def test_damaged_feature_cache_shard_is_computed_again(trained_model_dir, tmp_path):
    import shutil

    from etenet_tf.data import records
    from etenet_tf.training import feature_cache
    cfg = trained_model_dir
    cache = tmp_path / "features"
    shutil.copytree(RunDir(cfg.model_dir).features_dir, cache)
    model = RunDir(cfg.model_dir).load_trained_model("pretrain")  # its encoder made the cache
    shards = records.list_shards(str(cache), "train")
    read = lambda p: [r.numpy() for r in tf.data.TFRecordDataset(p)]  # noqa: E731
    expected = tf.train.Example.FromString(read(shards[0])[0])
    kept = {p: os.path.getmtime(p) for p in shards[1:]}
    data = bytearray(open(shards[0], "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(shards[0], "wb").write(bytes(data))
    messages = []
    built = feature_cache.build_cache(model, cfg.data.records_dir, str(cache), ("train", "val"),
                                      batch_size=cfg.training.eval_batch_size,
                                      image_size=cfg.data.image_size, progress=messages.append)
    assert built
    assert messages[0] == f"feature cache shard {shards[0]} is damaged; computing it again"
    assert records.verify_shard(shards[0]) is None
    assert {p: os.path.getmtime(p) for p in kept} == kept
    got = tf.train.Example.FromString(read(shards[0])[0])
    feature = lambda ex: np.frombuffer(  # noqa: E731
        ex.features.feature["features"].bytes_list.value[0], np.float32)
    np.testing.assert_allclose(feature(got), feature(expected), rtol=1e-5, atol=1e-5)
