"""Shared fixtures: tiny prepared data and a tiny trained model, built once."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from helpers import DATA, SHARED, data_path  # noqa: E402,F401

# The tiny model has every option of the real one on: an encoder cut at
# mixed2, a 2x2 grid and the temporal GRU.
TINY = dict(frames=2, image_size=75, min_word_count=1, encoder_weights="none",
            feature_layer="mixed2", spatial_grid=2, temporal="gru", context_dim=16,
            embedding_dim=16, hidden_dim=24, attention_dim=16, dropout=0.1, batch_size=8,
            eval_batch_size=16, pretrain_epochs=2, finetune_epochs=1, learning_rate=3e-3,
            encoder_learning_rate=1e-5, checkpoint_every_steps=3, beam_size=2,
            max_decode_length=10, calibration_batches=2, shapes_train_per_combination=1,
            videos_per_shard=16)


def tiny_cfg(tmp, **overrides):
    """An `ExperimentConfig` of the tiny model, writing under `tmp`."""
    from etenet_tf.jobs import ExperimentConfig
    values = dict(TINY, records_dir=os.path.join(tmp, "records"),
                  model_dir=os.path.join(tmp, "model"), stage="prepare")
    values.update(overrides)
    return ExperimentConfig.from_flat(values)


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
