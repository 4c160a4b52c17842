"""What the tests share: paths, the tiny model's config, running `main.py`
(in this process or in a fresh one), configs as flags, unprivileged child
processes, and a layer test in the spirit of keras-hub's `run_layer_test`."""

import contextlib
import io
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))

# Multithreaded CPU reductions (convolution weight gradients) add up in an
# order that depends on thread timing: two uninterrupted finetune runs then
# differ in the last bits, which Adam grows to ~1e-3 in 6 steps (measured).
# One thread makes every run bitwise repeatable.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


# The tiny model has every option of the real one on: an encoder cut at a
# block, a 2x2 grid and the temporal GRU. Its encoder is `small_cnn` (cut
# at block3, 10x10 at 75 px): the tests of the ImageNet backbones build
# InceptionV3 themselves (test_model, test_memory, test_scenes, ...), and
# the small one builds and traces in a fraction of InceptionV3's time.
TINY = dict(frames=2, image_size=75, min_word_count=1, encoder="small_cnn",
            encoder_weights="none", feature_layer="block3", spatial_grid=2, temporal="gru",
            context_dim=16, embedding_dim=16, hidden_dim=24, attention_dim=16, dropout=0.1,
            batch_size=8, eval_batch_size=16, pretrain_epochs=2, finetune_epochs=1,
            learning_rate=3e-3, encoder_learning_rate=1e-5, checkpoint_every_steps=3, beam_size=2,
            max_decode_length=10, calibration_batches=2, shapes_train_per_combination=1,
            videos_per_shard=16)


def data_path(name):
    return os.path.join(DATA, name)


def tiny_cfg(tmp, **overrides):
    """An `ExperimentConfig` of the tiny model, writing under `tmp`."""
    from etenet_tf.jobs import ExperimentConfig
    values = dict(TINY, records_dir=os.path.join(tmp, "records"),
                  model_dir=os.path.join(tmp, "model"), stage="prepare")
    values.update(overrides)
    return ExperimentConfig.from_flat(values)


def python_env(**extra):
    """The environment of a child Python process that imports this checkout."""
    return dict(os.environ, PYTHONPATH=ROOT, **extra)


def run_main(*args, timeout=300, env=None, **kwargs):
    """Runs `main.py` to the end; returns the `CompletedProcess` (text)."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args],
                          capture_output=True, text=True, cwd=kwargs.pop("cwd", ROOT),
                          timeout=timeout, env=python_env(**(env or {})), **kwargs)


def run_cli(*args):
    """Runs `main.py` with these flags in this process (flag parsing, the
    job, the one-line errors and exit status: `cli.main.run_in_process`),
    for tests where no process boundary is under test. Returns a
    `CompletedProcess` like `run_main`'s, with what Python printed to
    stdout and stderr."""
    from etenet_tf.cli import main as cli_main
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main.run_in_process(["main.py", *args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return subprocess.CompletedProcess(["main.py", *args], code, out.getvalue(), err.getvalue())


def start_main(args, log, env=None, **kwargs):
    """Starts `main.py` in its own process group (so a kill takes its
    workers too), writing its output to `log`; returns the `Popen`."""
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args],
                            cwd=ROOT, env=python_env(**(env or {})), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def argv(config, **changes):
    """The command-line flags of an `ExperimentConfig` (with changes)."""
    return config.replace(**changes).to_argv()


def run_python(code, *args, timeout=300, env=None, **kwargs):
    """Runs a Python snippet in a fresh interpreter that imports this checkout."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=kwargs.pop("cwd", ROOT), timeout=timeout,
                          env=python_env(**(env or {})), **kwargs)


def _drop_write_override():
    """preexec_fn: a root process loses the capabilities that let it write
    and read anywhere, so file permission bits apply to it as to any user."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def unprivileged():
    """`preexec_fn` for a subprocess that must respect permission bits
    (None when this process is not root anyway)."""
    return _drop_write_override if os.geteuid() == 0 else None


def read_only_dir(path):
    """Makes `path` a directory that an `unprivileged()` process cannot write."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o555)
    return str(path)


def run_layer_test(layer_cls, init_kwargs, inputs, *, expected_output_shape, call_kwargs=None,
                   trains=True, bfloat16=True):
    """The checks every layer of the package passes, as keras-hub's
    `TestCase.run_layer_test` does:

    - the config round-trips (`from_config(get_config())`, JSON-serialisable)
      and a layer rebuilt from it gives the same outputs with the same weights;
    - the output shape is `expected_output_shape`;
    - one training step moves every trainable weight that gets a gradient;
    - it runs under the `mixed_bfloat16` policy, with float32 weights.

    Args:
        layer_cls: the layer class.
        init_kwargs: its constructor arguments.
        inputs: positional call inputs (a tuple).
        expected_output_shape: shape of the (first) output.
        call_kwargs: keyword call arguments.
        trains: run the training step check.
        bfloat16: run the mixed precision check.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)
    out = layer(*inputs, **call_kwargs)
    first = out[0] if isinstance(out, (tuple, list)) else out
    assert tuple(first.shape) == tuple(expected_output_shape), first.shape
    config = layer.get_config()
    json.dumps(config)
    clone = layer_cls.from_config(config)
    clone(*inputs, **call_kwargs)
    clone.set_weights(layer.get_weights())
    again = clone(*inputs, **call_kwargs)
    again = again[0] if isinstance(again, (tuple, list)) else again
    np.testing.assert_allclose(np.asarray(again), np.asarray(first), rtol=1e-5, atol=1e-6)
    assert clone.get_config() == config
    if trains:
        optimizer = keras.optimizers.SGD(0.1)
        before = [w.numpy().copy() for w in layer.trainable_weights]
        with tf.GradientTape() as tape:
            out = layer(*inputs, training=True, **call_kwargs)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = tf.reduce_mean(tf.square(tf.cast(out, tf.float32)))
        grads = tape.gradient(loss, layer.trainable_weights)
        optimizer.apply(grads, layer.trainable_weights)
        moved = [not np.allclose(b, w.numpy()) for b, w, g in
                 zip(before, layer.trainable_weights, grads) if g is not None]
        assert moved and all(moved), "a trainable weight with a gradient did not move"
    if bfloat16:
        mixed = layer_cls(**init_kwargs, dtype="mixed_bfloat16")
        out = mixed(*inputs, **call_kwargs)
        out = out[0] if isinstance(out, (tuple, list)) else out
        assert np.isfinite(np.asarray(tf.cast(out, tf.float32))).all()
        assert all(w.dtype == "float32" for w in mixed.weights)


# The packages a TF Serving process does not have.
NOT_IN_SERVING = ("etenet_tf", "keras", "tensorflow_text", "tf_keras", "keras_hub")


def run_without_package(code, *args, tmp_path, timeout=300):
    """Runs Python `code` (with `args` as `sys.argv[1:]`) in a fresh process
    where this package, Keras and TF Text cannot be imported: stub packages
    first on the path raise ImportError, and the code first checks that
    they do (so a test cannot pass by accident on an importable one).
    Returns the last line of its stdout parsed as JSON."""
    blocked = os.path.join(str(tmp_path), "blocked")
    for name in NOT_IN_SERVING:
        os.makedirs(os.path.join(blocked, name), exist_ok=True)
        with open(os.path.join(blocked, name, "__init__.py"), "w") as f:
            f.write(f"raise ImportError('{name} is blocked')\n")
    check = ("import sys\n"
             f"for name in {NOT_IN_SERVING!r}:\n"
             "    try:\n"
             "        __import__(name)\n"
             "        raise SystemExit(name + ' is importable: the test is not isolated')\n"
             "    except ImportError:\n"
             "        pass\n")
    proc = subprocess.run([sys.executable, "-c", check + code, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=blocked))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
