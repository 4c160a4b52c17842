"""Training stages as data: the stage registry, the spec, the resolved
configuration each stage writes, and the scores that name it."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from etenet_tf import jobs
from etenet_tf.cli import flags as flags_lib
from etenet_tf.evaluation import validation
from etenet_tf.run_dir import RunDir
from etenet_tf.training import stages
from etenet_tf.training.objectives import TeacherForcing


def test_every_registered_stage_is_a_command_line_stage():
    assert list(stages.STAGES) == ["pretrain", "finetune", "scst"]
    assert jobs.TRAINING_STAGES == tuple(stages.STAGES)
    assert all(jobs.JOBS[name].module == "train" for name in stages.STAGES)
    config = flags_lib.parse(["main.py", "--stage=scst"])
    assert config.stage == "scst" and config.explicit_flags == {"stage"}


def test_a_spec_is_checked_when_it_is_made():
    with pytest.raises(ValueError, match="no nope_epochs field"):
        stages.StageSpec("nope", "x", objective=stages.teacher_forcing)
    with pytest.raises(ValueError, match="frozen encoder"):
        stages.StageSpec("pretrain", "x", objective=stages.teacher_forcing, inputs="features",
                         encoder_blocks=-1)
    with pytest.raises(ValueError, match="registered already"):
        stages.register_stage(stages.StageSpec("scst", "x", objective=stages.teacher_forcing))


def test_feature_cache_is_pretrains_while_the_encoder_is_pretrains(tmp_path):
    run = RunDir(str(tmp_path))
    assert stages.feature_cache_dir(run, stages.PRETRAIN, None) == run.features_dir
    assert stages.feature_cache_dir(run, stages.SCST, "pretrain") == run.features_dir
    assert stages.feature_cache_dir(run, stages.SCST, "finetune") == os.path.join(
        run.stage_dir("scst"), "features")


def test_each_stage_writes_its_resolved_configuration(trained_model_dir):
    cfg = trained_model_dir
    run = RunDir(cfg.model_dir)
    pre = json.load(open(stages.config_path(run, "pretrain")))
    fine = json.load(open(stages.config_path(run, "finetune")))
    assert pre["stage"] == "pretrain" and pre["resolved"]["starts_from"] is None
    assert pre["resolved"]["inputs"] == "features" and pre["resolved"]["epochs"] == 2
    assert pre["resolved"]["encoder_learning_rate"] is None
    assert pre["resolved"]["decoder_learning_rate"] == cfg.training.learning_rate
    assert fine["resolved"]["starts_from"] == "pretrain" and fine["resolved"]["epochs"] == 1
    assert fine["resolved"]["encoder_blocks"] == -1
    # --finetune_learning_rate=0 means --learning_rate: the value used is written
    assert fine["resolved"]["decoder_learning_rate"] == 3e-3
    assert fine["resolved"]["encoder_learning_rate"] == 1e-5
    assert fine["resolved"]["objective"] == {"name": "TeacherForcing", "label_smoothing": 0.0}
    assert fine["resolved"]["records"]["num_frames"] == 2
    # the model as trained (frame size and count of the records), every flag of the command
    assert fine["model"] == run.read_model_config().to_dict()
    assert fine["flags"] == json.loads(json.dumps(cfg.replace(stage="finetune").to_flat()))
    assert fine["training"]["finetune_epochs"] == 1 and fine["version"]


def test_evaluate_scores_name_the_configuration(trained_model_dir, tmp_path):
    cfg = trained_model_dir
    model_dir = str(tmp_path / "model")
    shutil.copytree(cfg.model_dir, model_dir, ignore=shutil.ignore_patterns(".lock"))
    jobs.run(cfg.replace(model_dir=model_dir, stage="evaluate", checkpoint="finetune",
                         split="val", beam_size=1))
    scores = json.load(open(os.path.join(model_dir, "evaluation", "finetune_val_scores.json")))
    path = stages.config_path(RunDir(model_dir), "finetune")
    assert scores["config"] == {"stage": "finetune", "path": path,
                                "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}
    assert "CIDEr" in scores


def test_a_new_stage_with_its_own_objective_is_one_spec(trained_model_dir, tmp_path):
    """A stage that is only data: from the best pretrain weights, on the
    pretrain feature cache, a label-smoothed objective, finetune's epochs."""

    class Smoothed(TeacherForcing):
        pass

    spec = stages.StageSpec(
        "smooth", "decoder only, label smoothing", start="pretrain", inputs="features",
        objective=lambda training, prepared: Smoothed(0.2), epochs="finetune_epochs",
        decoder_learning_rate=1e-3)
    cfg = trained_model_dir
    model_dir = str(tmp_path / "model")
    shutil.copytree(cfg.model_dir, model_dir, ignore=shutil.ignore_patterns(".lock"))
    run = RunDir(model_dir)
    best = stages.run_stage(spec, run, cfg.data, None, cfg.training)
    assert best["epoch"] == 1 and run.read_best("smooth") == best
    written = json.load(open(stages.config_path(run, "smooth")))["resolved"]
    assert written["objective"] == {"name": "Smoothed", "label_smoothing": 0.2}
    assert written["starts_from"] == "pretrain" and written["decoder_learning_rate"] == 1e-3
    pre, new = run.load_trained_model("pretrain"), run.load_trained_model("smooth")
    np.testing.assert_array_equal(pre.encoder.weights[0].numpy(), new.encoder.weights[0].numpy())
    assert not np.allclose(pre.decoder.output_projection.kernel.numpy(),
                           new.decoder.output_projection.kernel.numpy())
    # the pretrain cache was reused, not a second one made
    assert not os.path.exists(os.path.join(run.stage_dir("smooth"), "features"))


def test_validation_caption_table_and_metrics():
    samples = [("v1", "a red circle", ["a red circle", "red ball", "x", "y"], None)]
    table = validation.caption_table(samples)
    assert table.splitlines() == ["| video | generated | references |", "|---|---|---|",
                                  "| v1 | a red circle | a red circle / red ball / x |"]
    assert validation.known_metrics({"shape": ["circle"]})[-2:] == ["acc_shape", "acc_all"]
    assert "acc_all" not in validation.known_metrics(None)


def test_a_stage_runs_under_its_precision_and_restores_the_policy_after(trained_model_dir,
                                                                         tmp_path):
    """`--mixed_precision=bfloat16` holds inside the stage only: after it
    (here: after it fails) the process builds models in float32 again."""
    import keras
    seen = []

    class Stop(Exception):
        pass

    def objective(training, prepared):
        seen.append(keras.config.dtype_policy().name)
        raise Stop

    spec = stages.StageSpec("probe", "records the policy", start="pretrain", inputs="features",
                            objective=objective, epochs="finetune_epochs")
    cfg = trained_model_dir
    model_dir = str(tmp_path / "model")
    shutil.copytree(cfg.model_dir, model_dir, ignore=shutil.ignore_patterns(".lock"))
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(Stop):
        stages.run_stage(spec, RunDir(model_dir), cfg.data, None,
                         cfg.replace(mixed_precision="bfloat16").training)
    assert seen == ["mixed_bfloat16"] and keras.config.dtype_policy().name == "float32"
