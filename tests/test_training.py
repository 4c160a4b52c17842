import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_cfg
from etenet_tf.training import checkpoints, stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_stages_train_and_record_best(trained_model_dir):
    cfg = trained_model_dir
    pre = checkpoints.read_best(os.path.join(cfg.model_dir, "pretrain"))
    fine = checkpoints.read_best(os.path.join(cfg.model_dir, "finetune"))
    assert pre["metric"] == "CIDEr" and 1 <= pre["epoch"] <= 2
    assert fine["epoch"] == 1 and "Bleu_4" in fine["scores"]
    logs = os.path.join(cfg.model_dir, "pretrain", "logs")
    assert os.listdir(os.path.join(logs, "train")) and os.listdir(os.path.join(logs, "validation"))
    tags = set()
    for event_file in tf.io.gfile.glob(os.path.join(logs, "validation", "*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags.update(v.tag for v in event.summary.value)
    assert {"metrics/CIDEr", "captions", "attention/0"} <= tags


def test_finetune_changes_encoder_pretrain_does_not(trained_model_dir):
    from etenet_tf.training import feature_cache
    cfg = trained_model_dir
    pre, _ = stages.load_trained_model(cfg.model_dir, "pretrain")
    fine, _ = stages.load_trained_model(cfg.model_dir, "finetune")
    # the cache was computed before pretrain trained: a frozen encoder still matches it
    cache = json.load(open(os.path.join(cfg.model_dir, "features", "cache.json")))
    assert feature_cache.encoder_fingerprint(pre.encoder) == cache["fingerprint"]
    assert feature_cache.encoder_fingerprint(fine.encoder) != cache["fingerprint"]
    first_conv = lambda m: m.encoder.backbone.layers[1].kernel.numpy()  # noqa: E731
    assert not np.allclose(first_conv(pre), first_conv(fine))


def test_resume_continues_from_checkpoint(shapes_records, tmp_path, capsys):
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.records_dir, pretrain_epochs=1)
    stages.run_pretrain(cfg)
    first = checkpoints.read_best(os.path.join(cfg.model_dir, "pretrain"))
    cfg.pretrain_epochs = 2
    capsys.readouterr()
    stages.run_pretrain(cfg)
    out = capsys.readouterr().out
    assert "resumed from" in out and "feature cache reused" in out
    assert "epoch 1/2" not in out and "epoch 2/2" in out
    assert checkpoints.read_best(os.path.join(cfg.model_dir, "pretrain"))["step"] >= first["step"]


def test_finetune_without_pretrain_is_a_clear_error(shapes_records, tmp_path):
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.records_dir)
    with pytest.raises(checkpoints.NoCheckpointError, match="run --stage=pretrain"):
        stages.run_finetune(cfg)


def test_nan_loss_stops_and_keeps_last_checkpoint(shapes_records, tmp_path):
    from etenet_tf.training import loop
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.records_dir,
                   learning_rate=float("nan"))
    with pytest.raises(loop.TrainingDivergedError, match="last good checkpoint"):
        stages.run_pretrain(cfg)
    assert tf.train.latest_checkpoint(os.path.join(cfg.model_dir, "pretrain", "checkpoints")) is None


_DISTRIBUTED = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    if os.environ.get("LOGICAL_CPUS"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from etenet_tf.cli import flags
    from etenet_tf.training import checkpoints, stages
    if os.environ.get("SLOW_BEST_JSON"):
        # the chief writes best.json late: other workers must wait for it
        import time
        def slow_write_json(path, value, _write=checkpoints.write_json):
            time.sleep(3)
            _write(path, value)
        checkpoints.write_json = slow_write_json
    cfg = flags.defaults(**json.loads(sys.argv[1]))
    stages.run_pretrain(cfg)
    model, _ = stages.load_trained_model(cfg.model_dir, "pretrain")
    np.save(sys.argv[2], model.decoder.output_projection.kernel.numpy())
""")


def _run_distributed(cfg, out, env, timeout=240):
    values = {k: v for k, v in vars(cfg).items()}
    return subprocess.Popen([sys.executable, "-c", _DISTRIBUTED, json.dumps(values), out],
                            env=dict(os.environ, PYTHONPATH=ROOT, **env), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_mirrored_over_two_logical_cpus(shapes_records, tmp_path):
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.records_dir, pretrain_epochs=1,
                   strategy="mirrored", stage="pretrain")
    proc = _run_distributed(cfg, str(tmp_path / "w.npy"), {"LOGICAL_CPUS": "1"})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert np.isfinite(np.load(tmp_path / "w.npy")).all()


def _free_ports(n):
    import socket
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_local_processes_agree(shapes_records, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.records_dir, pretrain_epochs=1,
                   strategy="multi_worker", stage="pretrain", checkpoint_every_steps=0)
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(_run_distributed(cfg, str(tmp_path / f"w{i}.npy"),
                                      {"TF_CONFIG": tf_config, "SLOW_BEST_JSON": "1"}))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy"))


def _tiny_checkpoints(stage_dir):
    """A small Keras model with the stage's checkpoints, as a run creates them."""
    import keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    return model, checkpoints.TrainingCheckpoints(
        str(stage_dir), model, {}, tf.distribute.OneDeviceStrategy("/cpu:0"))


def _flip_bytes(path, count=64):
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    for i in range(middle, min(middle + count, len(data))):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _damage(directory, name, how):
    prefix = os.path.join(directory, name)
    if how == "flipped_data":
        _flip_bytes(prefix + ".data-00000-of-00001")
    elif how == "flipped_index":
        _flip_bytes(prefix + ".index", 16)
    elif how == "missing_data_file":
        os.remove(prefix + ".data-00000-of-00001")
    elif how == "empty_state_file":
        open(os.path.join(directory, "checkpoint"), "w").close()


@pytest.mark.parametrize("how", ["flipped_data", "flipped_index", "missing_data_file",
                                 "empty_state_file"])
def test_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, capsys, how):
    model, saver = _tiny_checkpoints(tmp_path / "stage")
    kernel = model.layers[0].kernel
    kernel.assign(tf.ones_like(kernel))
    saver.step.assign(5)
    saver.save()
    kernel.assign(2 * tf.ones_like(kernel))
    saver.step.assign(10)
    saver.save()
    directory = str(tmp_path / "stage" / "checkpoints")
    _damage(directory, "ckpt-10", how)
    capsys.readouterr()
    model, saver = _tiny_checkpoints(tmp_path / "stage")  # the re-run
    restored = saver.restore_latest()
    warnings = [l for l in capsys.readouterr().err.splitlines() if l]
    assert len(warnings) == 1 and warnings[0].startswith("warning:"), warnings
    if how == "empty_state_file":  # both checkpoints are intact: the newest is used
        assert restored == os.path.join(directory, "ckpt-10") and "rebuilt" in warnings[0]
        return
    assert restored == os.path.join(directory, "ckpt-5")
    assert "ckpt-10 is damaged" in warnings[0] and "resuming from" in warnings[0]
    assert int(saver.step.numpy()) == 5
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.ones((3, 2)))
    # the damaged files are kept aside, and the run goes on saving normally
    assert not os.path.exists(os.path.join(directory, "ckpt-10.index"))
    assert os.path.exists(os.path.join(directory, "ckpt-10.index.corrupt"))
    saver.step.assign(8)
    saver.save()
    assert tf.train.latest_checkpoint(directory) == os.path.join(directory, "ckpt-8")
    assert checkpoints.checkpoint_paths(directory) == [os.path.join(directory, "ckpt-8"),
                                                       os.path.join(directory, "ckpt-5")]


def test_no_intact_checkpoint_left_is_a_clear_error(tmp_path, capsys):
    model, saver = _tiny_checkpoints(tmp_path / "stage")
    saver.step.assign(5)
    saver.save()
    _damage(str(tmp_path / "stage" / "checkpoints"), "ckpt-5", "flipped_data")
    model, saver = _tiny_checkpoints(tmp_path / "stage")
    with pytest.raises(checkpoints.CorruptCheckpointError, match="delete .*checkpoints"):
        saver.restore_latest()


def test_damaged_best_checkpoint_is_a_clear_error(tmp_path):
    model, saver = _tiny_checkpoints(tmp_path / "stage")
    saver.step.assign(7)
    saver.save_best({"metric": "CIDEr", "value": 1.0, "epoch": 1, "step": 7, "scores": {}})
    checkpoints.restore_best(model, str(tmp_path / "stage"))  # intact: loads
    _damage(str(tmp_path / "stage" / "best"), "ckpt-7", "flipped_data")
    best_dir = str(tmp_path / "stage" / "best")
    with pytest.raises(checkpoints.CorruptCheckpointError,
                       match=f"{best_dir} is damaged .*restore .* from a backup") as error:
        checkpoints.restore_best(model, str(tmp_path / "stage"))
    assert "--stage=stage" in str(error.value)
    # a training run refuses to go on from it as well, with the same message
    with pytest.raises(checkpoints.CorruptCheckpointError, match="only copy"):
        _tiny_checkpoints(tmp_path / "stage")
    open(os.path.join(best_dir, "best.json"), "w").write("{not json")
    with pytest.raises(checkpoints.CorruptCheckpointError, match="best.json"):
        checkpoints.read_best(str(tmp_path / "stage"))


def test_temp_dir_of_a_killed_save_is_removed(tmp_path):
    leftover = tmp_path / "stage" / "checkpoints" / "ckpt-7_temp"
    leftover.mkdir(parents=True)
    (leftover / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x" * 1000)
    _tiny_checkpoints(tmp_path / "stage")
    assert not leftover.exists()


_READ_ONLY_SAVE = textwrap.dedent("""
    import sys
    import keras, tensorflow as tf
    from etenet_tf.training import checkpoints
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    saver = checkpoints.TrainingCheckpoints(sys.argv[1], model, {},
                                            tf.distribute.OneDeviceStrategy("/cpu:0"))
    saver.step.assign(3)
    try:
        saver.save()
    except checkpoints.CheckpointWriteError as e:
        print(e)
""")


def test_read_only_checkpoint_dir_is_not_called_a_full_disk(tmp_path):
    from conftest import read_only_dir, unprivileged
    stage = tmp_path / "stage"
    read_only_dir(stage / "checkpoints")
    proc = subprocess.run([sys.executable, "-c", _READ_ONLY_SAVE, str(stage)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT), preexec_fn=unprivileged())
    assert proc.returncode == 0, proc.stderr[-2000:]
    message = proc.stdout.strip().splitlines()[-1]
    assert "could not write the resume checkpoint" in message, proc.stdout
    assert "Free disk space" not in message and f"Make {stage / 'checkpoints'} writable" in message


def test_damaged_feature_cache_shard_is_computed_again(trained_model_dir, tmp_path):
    import shutil
    from etenet_tf.data import records
    from etenet_tf.training import feature_cache
    cfg = trained_model_dir
    cache = tmp_path / "features"
    shutil.copytree(os.path.join(cfg.model_dir, "features"), cache)
    model, _ = stages.load_trained_model(cfg.model_dir, "pretrain")  # its encoder made the cache
    shards = records.list_shards(str(cache), "train")
    read = lambda p: [r.numpy() for r in tf.data.TFRecordDataset(p)]  # noqa: E731
    expected = tf.train.Example.FromString(read(shards[0])[0])
    kept = {p: os.path.getmtime(p) for p in shards[1:]}
    data = bytearray(open(shards[0], "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(shards[0], "wb").write(bytes(data))
    messages = []
    built = feature_cache.build_cache(model, cfg.records_dir, str(cache), ("train", "val"),
                                      batch_size=cfg.eval_batch_size, image_size=cfg.image_size,
                                      progress=messages.append)
    assert built and messages[0] == f"feature cache shard {shards[0]} is damaged; computing it again"
    assert records.verify_shard(shards[0]) is None
    assert {p: os.path.getmtime(p) for p in kept} == kept
    got = tf.train.Example.FromString(read(shards[0])[0])
    feature = lambda ex: np.frombuffer(  # noqa: E731
        ex.features.feature["features"].bytes_list.value[0], np.float32)
    np.testing.assert_allclose(feature(got), feature(expected), rtol=1e-5, atol=1e-5)


def test_records_that_run_short_are_an_error(trained_model_dir, tmp_path):
    """dataset.json promises more training videos than the records hold:
    the epoch stops short, which is an error, not a shorter epoch."""
    from etenet_tf.data import pipeline, records
    from etenet_tf.text import tokenizer as tokenizer_lib
    from etenet_tf.training import loop
    cfg = tiny_cfg(str(tmp_path), records_dir=trained_model_dir.records_dir)
    info, vocabulary, max_length = stages.load_prepared(cfg)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    model = stages._stage_model(cfg, strategy, info, vocabulary)
    trainer = stages._make_trainer(cfg, model, strategy, "pretrain", "features", 1e-3)
    tokenizer = tokenizer_lib.CaptionTokenizer(vocabulary, max_length)
    shards = records.list_shards(os.path.join(trained_model_dir.model_dir, "features"), "train")
    assert info["splits"]["train"]["videos"] == 48
    with pytest.raises(loop.TrainingInputError, match="epoch 1 ended after 6 of 12 steps"):
        trainer.fit(lambda bs, epoch, ctx: pipeline.train_dataset(
            shards, "features", tokenizer, bs, epoch=epoch, input_context=ctx),
            num_videos=96, epochs=1, validate=lambda epoch: pytest.fail("validated"))
