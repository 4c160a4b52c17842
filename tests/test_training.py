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
