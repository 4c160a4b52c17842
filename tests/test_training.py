"""The training stages on the tiny shapes data: pretrain, finetune, resume,
errors, and the strategies."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from etenet_tf import jobs
from etenet_tf.run_dir import NoCheckpointError, RunDir
from etenet_tf.training import stages

from conftest import tiny_cfg
from helpers import ROOT, python_env


def test_two_stages_train_and_record_best(trained_model_dir):
    cfg = trained_model_dir
    run = RunDir(cfg.model_dir)
    pre, fine = run.read_best("pretrain"), run.read_best("finetune")
    assert pre["metric"] == "CIDEr" and 1 <= pre["epoch"] <= 2
    assert fine["epoch"] == 1 and "Bleu_4" in fine["scores"] and "acc_all" in fine["scores"]
    logs = os.path.join(cfg.model_dir, "pretrain", "logs")
    assert os.listdir(os.path.join(logs, "train")) and os.listdir(os.path.join(logs, "validation"))
    tags = set()
    for event_file in tf.io.gfile.glob(os.path.join(logs, "validation", "*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags.update(v.tag for v in event.summary.value)
    assert {"metrics/CIDEr", "metrics/acc_shape", "metrics/acc_all", "captions",
            "attention/0"} <= tags


def test_pretrain_trains_the_context_and_the_decoder(trained_model_dir):
    import keras

    from etenet_tf.model import build_captioner
    run = RunDir(trained_model_dir.model_dir)
    trained = run.load_trained_model("pretrain")
    keras.utils.set_random_seed(trained_model_dir.training.seed)  # the initial weights
    initial = build_captioner(run.read_model_config(), run.read_vocabulary().tokens)
    for part in ("context", "decoder"):
        before = getattr(initial, part).trainable_weights
        after = getattr(trained, part).trainable_weights
        assert all(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(before, after)), part


def test_finetune_changes_the_encoder(trained_model_dir):
    run = RunDir(trained_model_dir.model_dir)
    pre, fine = run.load_trained_model("pretrain"), run.load_trained_model("finetune")
    first_conv = lambda m: m.encoder.backbone.layers[1].kernel.numpy()  # noqa: E731
    assert not np.allclose(first_conv(pre), first_conv(fine))


@pytest.mark.slow
def test_resume_continues_from_checkpoint(shapes_records, tmp_path, capsys):
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.data.records_dir,
                   pretrain_epochs=1, stage="pretrain")
    jobs.run(cfg)
    first = RunDir(cfg.model_dir).read_best("pretrain")
    capsys.readouterr()
    jobs.run(cfg.replace(pretrain_epochs=2))
    out = capsys.readouterr().out
    assert "resumed from" in out and "feature cache reused" in out
    assert "epoch 1/2" not in out and "epoch 2/2" in out
    assert RunDir(cfg.model_dir).read_best("pretrain")["step"] >= first["step"]


def test_finetune_without_pretrain_is_a_clear_error(shapes_records, tmp_path):
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.data.records_dir, stage="finetune")
    with pytest.raises(NoCheckpointError, match="run --stage=pretrain"):
        jobs.run(cfg)


def test_nan_loss_stops_and_keeps_last_checkpoint(shapes_records, tmp_path):
    from etenet_tf.training import loop
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.data.records_dir,
                   learning_rate=float("nan"))
    with pytest.raises(loop.TrainingDivergedError, match="last good checkpoint"):
        # (the command line refuses a NaN rate: this is the loop's own guard)
        stages.pretrain(RunDir(cfg.model_dir), cfg.data, cfg.model, cfg.training)
    assert tf.train.latest_checkpoint(RunDir(cfg.model_dir).checkpoints_dir("pretrain")) is None


_DISTRIBUTED = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    if os.environ.get("LOGICAL_CPUS"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from etenet_tf import jobs
    from etenet_tf.run_dir import RunDir
    from etenet_tf.training import checkpoints
    if os.environ.get("SLOW_BEST_JSON"):
        # the chief writes best.json late: other workers must wait for it
        import time
        def slow_write_json(path, value, _write=checkpoints.write_json):
            time.sleep(3)
            _write(path, value)
        checkpoints.write_json = slow_write_json
    cfg = jobs.ExperimentConfig.from_flat(json.loads(sys.argv[1]))
    jobs.run(cfg)
    stage = "pretrain"
    if os.environ.get("SCST"):  # self-critical training on the same loop and strategy
        jobs.run(cfg.replace(stage="scst", scst_epochs=1, scst_samples=2))
        stage = "scst"
    model = RunDir(cfg.model_dir).load_trained_model(stage)
    # every decoder weight (the Transformer ties its output to the embedding)
    weights = model.decoder.trainable_weights
    np.save(sys.argv[2], np.concatenate([w.numpy().ravel() for w in weights]))
""")


def _run_distributed(cfg, out, env, timeout=240):
    return subprocess.Popen([sys.executable, "-c", _DISTRIBUTED, json.dumps(cfg.to_flat()), out],
                            env=python_env(**env), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["sa_lstm", "transformer"])
def test_mirrored_over_two_logical_cpus_pretrain_and_scst(shapes_records, tmp_path, decoder):
    """Both decoders train under MirroredStrategy, teacher-forced and
    self-critical (the Transformer's key/value cache in the sampler's
    state, replicated)."""
    extra = {} if decoder == "sa_lstm" else dict(decoder="transformer", feedforward_dim=32)
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.data.records_dir, pretrain_epochs=1,
                   strategy="mirrored", stage="pretrain", **extra)
    proc = _run_distributed(cfg, str(tmp_path / "w.npy"), {"LOGICAL_CPUS": "1", "SCST": "1"})
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


@pytest.mark.slow
def test_multi_worker_two_local_processes_agree(shapes_records, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    cfg = tiny_cfg(str(tmp_path), records_dir=shapes_records.data.records_dir, pretrain_epochs=1,
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


def test_records_that_run_short_are_an_error(trained_model_dir, tmp_path):
    """dataset.json promises more training videos than the records hold:
    the epoch stops short, which is an error, not a shorter epoch."""
    from etenet_tf.data import pipeline, records
    from etenet_tf.text import tokenizer as tokenizer_lib
    from etenet_tf.training import loop
    from etenet_tf.training.objectives import TeacherForcing
    cfg = tiny_cfg(str(tmp_path), records_dir=trained_model_dir.data.records_dir)
    prepared = stages.load_prepared(cfg.data)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    run = RunDir(cfg.model_dir)
    model = stages._stage_model(run, cfg.model, prepared, cfg.training, strategy)
    trainer = stages.make_trainer(run, "pretrain", model, strategy, cfg.training, prepared,
                                  objective=TeacherForcing(), kind="features",
                                  decoder_learning_rate=1e-3)
    tokenizer = tokenizer_lib.CaptionTokenizer(prepared.vocabulary, prepared.max_length)
    shards = records.list_shards(RunDir(trained_model_dir.model_dir).features_dir, "train")
    assert prepared.train_videos == 48
    with pytest.raises(loop.TrainingInputError, match="epoch 1 ended after 6 of 12 steps"):
        trainer.fit(lambda bs, epoch, ctx: pipeline.train_dataset(
            shards, "features", tokenizer, bs, epoch=epoch, input_context=ctx),
            num_videos=96, epochs=1, validate=lambda epoch: pytest.fail("validated"))
