"""What the tests share: paths, running `main.py`, configs as flags, and a
layer test in the spirit of keras-hub's `run_layer_test`."""

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


def data_path(name):
    return os.path.join(DATA, name)


def python_env(**extra):
    """The environment of a child Python process that imports this checkout."""
    return dict(os.environ, PYTHONPATH=ROOT, **extra)


def run_main(*args, timeout=300, env=None, **kwargs):
    """Runs `main.py` to the end; returns the `CompletedProcess` (text)."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args],
                          capture_output=True, text=True, cwd=kwargs.pop("cwd", ROOT),
                          timeout=timeout, env=python_env(**(env or {})), **kwargs)


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
