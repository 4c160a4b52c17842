"""Shared fixtures: tiny prepared data and a tiny trained model, built once.

The helpers live in `helpers.py`; `TINY`, `tiny_cfg`, `unprivileged` and
`read_only_dir` are importable from here too, as before.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from helpers import (  # noqa: E402,F401
    DATA,
    SHARED,
    TINY,
    data_path,
    read_only_dir,
    tiny_cfg,
    unprivileged,
)


@pytest.fixture(scope="session")
def shapes_records(tmp_path_factory):
    """Tiny shapes records: 48 train / 48 val / 48 test clips, 2 frames of 75 px."""
    from etenet_tf import jobs
    tmp = str(tmp_path_factory.mktemp("shapes"))
    cfg = tiny_cfg(tmp)
    jobs.run(cfg)
    return cfg


@pytest.fixture(scope="session")
def trained_model_dir(shapes_records):
    """pretrain (2 epochs) + finetune (1 epoch) of a tiny model."""
    from etenet_tf import jobs
    jobs.run(shapes_records.replace(stage="pretrain"))
    jobs.run(shapes_records.replace(stage="finetune"))
    return shapes_records


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    """A test that sets Keras' global dtype policy (the layer harness's
    bfloat16 checks, a stage's `--mixed_precision`, which `run_stage`
    restores itself) must not leave it to the next test's models."""
    import keras
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)
