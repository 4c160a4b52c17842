"""Model flags that differ from the stored model (or the records) are refused
with one line, exit 2, before anything is written; flags left at their
defaults, or equal to the stored values, are not differences."""

import dataclasses
import os
import shutil

import pytest

from etenet_tf import jobs
from etenet_tf.cli import flags as flags_lib
from etenet_tf.jobs import model_flags
from etenet_tf.model.config import ModelConfig
from etenet_tf.options import flag_fields
from etenet_tf.run_dir import RunDir

from conftest import tiny_cfg


def _tree(path):
    """Every file under `path` with its size and mtime (what a run writes)."""
    found = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            found[full] = (os.path.getsize(full), os.path.getmtime(full))
    return found


@pytest.fixture
def model_copy(trained_model_dir, tmp_path):
    """A copy of the tiny trained model (a refused run must not touch it)."""
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained_model_dir.model_dir, model_dir,
                    ignore=shutil.ignore_patterns(".lock", "evaluation"))
    return trained_model_dir, model_dir


def _command(cfg, model_dir, *args):
    return ["main.py", f"--model_dir={model_dir}", f"--records_dir={cfg.data.records_dir}", *args]


def test_finetune_with_other_model_flags_is_one_line_exit_2_nothing_written(
        model_copy, capsys, monkeypatch):
    from etenet_tf.cli import main as main_lib
    cfg, model_dir = model_copy
    argv = _command(cfg, model_dir, "--stage=finetune", "--spatial_grid=1", "--temporal=none",
                    "--hidden_dim=64")
    fresh = flags_lib.flags.FlagValues()
    config = flags_lib.parse(argv, fresh)
    monkeypatch.setattr(flags_lib, "to_config", lambda: config)  # main() reads these flags
    before = _tree(model_dir)
    with pytest.raises(SystemExit) as exit_:
        main_lib.main(["main.py"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in ("--spatial_grid=1 (stored: 2)", "--temporal=none (stored: gru)",
                   "--hidden_dim=64 (stored: 24)", f"--model_dir={model_dir}",
                   "drop those flags", "new --model_dir"):
        assert needle in lines[0], lines[0]
    assert _tree(model_dir) == before


def test_an_explicit_default_counts_a_flagfile_counts_equal_values_do_not(model_copy,
                                                                           tmp_path):
    cfg, model_dir = model_copy
    run = RunDir(model_dir)
    # the tiny model's own values given again, and flags left at their defaults: fine
    same = flags_lib.parse(_command(cfg, model_dir, "--stage=evaluate", "--hidden_dim=24",
                                    "--temporal=gru", "--encoder=small_cnn", "--frames=2"))
    model_flags.check(same, run, records=True)
    # --hidden_dim=512 is the default, but the user gave it: the model has 24
    explicit = flags_lib.parse(_command(cfg, model_dir, "--stage=evaluate", "--hidden_dim=512"))
    with pytest.raises(model_flags.ModelFlagsError, match=r"--hidden_dim=512 \(stored: 24\)"):
        model_flags.check(explicit, run)
    flagfile = tmp_path / "other.cfg"
    flagfile.write_text("--dropout=0.3\n--embedding_dim=16\n")
    from_file = flags_lib.parse(_command(cfg, model_dir, "--stage=export",
                                         f"--flagfile={flagfile}"))
    with pytest.raises(model_flags.ModelFlagsError) as error:
        model_flags.check(from_file, run)
    assert "--dropout=0.3 (stored: 0.1)" in str(error.value)
    assert "embedding_dim" not in str(error.value)  # given, but equal to the stored value


@pytest.mark.parametrize("stage", ["scst", "evaluate", "caption", "export", "pretrain", "all"])
def test_every_stage_from_a_stored_model_refuses_another_encoder(model_copy, stage, tmp_path):
    cfg, model_dir = model_copy
    config = flags_lib.parse(_command(cfg, model_dir, f"--stage={stage}",
                                      "--encoder=inception_resnet_v2",
                                      f"--videos={tmp_path}", f"--export_dir={tmp_path}/e"))
    before = _tree(model_dir)
    with pytest.raises(model_flags.ModelFlagsError,
                       match=r"--encoder=inception_resnet_v2 \(stored: small_cnn\)"):
        jobs.run(config)
    assert _tree(model_dir) == before and not os.path.exists(tmp_path / "e")


def test_pretrain_with_other_frames_and_size_than_the_records(shapes_records, tmp_path):
    """The records hold 2 frames of 75 px: --frames=4 --image_size=96 would
    be silently replaced by them."""
    config = flags_lib.parse(_command(shapes_records, str(tmp_path / "new"), "--stage=pretrain",
                                      "--frames=4", "--image_size=96"))
    with pytest.raises(model_flags.ModelFlagsError) as error:
        jobs.run(config)
    message = str(error.value)
    assert "--frames=4 (records: 2), --image_size=96 (records: 75)" in message
    assert "new --records_dir" in message and "\n" not in message
    assert not os.path.exists(tmp_path / "new")


def test_python_configs_count_values_that_are_not_the_defaults(model_copy):
    cfg, model_dir = model_copy
    config = cfg.replace(model_dir=model_dir, stage="finetune", attention_dim=32)
    assert config.explicit_flags is None
    with pytest.raises(model_flags.ModelFlagsError, match=r"--attention_dim=32 \(stored: 16\)"):
        jobs.run(config)
    # the tiny config itself (its values are not the defaults) matches the model
    model_flags.check(cfg.replace(model_dir=model_dir), RunDir(model_dir), records=True)


def _other_value(field, value):
    """A valid value of a `ModelConfig` field other than `value`."""
    choices = field.metadata.get("choices")
    if choices:
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):
        return value / 2 if value else 0.25
    if isinstance(value, int):  # (doubled: the Transformer's heads still divide its size)
        return value * 2 if value else 1
    return value + "_other" if value else "mixed3"


def test_every_model_flag_is_compared(tmp_path):
    """The comparison runs over ModelConfig's flag fields: a new model option
    is covered without a change to the check."""
    stored = ModelConfig(image_size=75, num_frames=2)
    run = RunDir(str(tmp_path / "model"))
    os.makedirs(run.path)
    from etenet_tf.files import write_json
    write_json(os.path.join(run.path, run.MODEL_CONFIG), stored.to_dict())
    fields = flag_fields(ModelConfig)
    assert len(fields) >= 9
    changed = {f.name: _other_value(f, getattr(stored, f.name)) for f in fields}
    config = tiny_cfg(str(tmp_path), model_dir=run.path)
    config = dataclasses.replace(config, model=dataclasses.replace(stored, **changed),
                                 explicit_flags=frozenset(changed))
    model, data = model_flags.differences(config, run)
    assert {name for name, _, _ in model} == set(changed) and not data
    assert all(ours == changed[name] and theirs == getattr(stored, name)
               for name, ours, theirs in model)
