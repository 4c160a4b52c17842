"""The command line: flags, one-line errors and exit codes, write targets.

The flags are parsed and the job run in this process (`helpers.run_cli`);
`main.py` itself runs in a fresh interpreter only where the process is
what is under test: the entry point, and permission bits that apply to a
process without root's capabilities.
"""

import glob
import os

import pytest

from helpers import ROOT, error_lines, read_only_dir, run_cli, run_main, unprivileged

BAD_FLAGS = [
    (["--stage=fly"], "stage"),
    (["--stage=prepare", "--dataset=imagenet"], "dataset"),
    (["--stage=pretrain", "--encoder=vgg99"], "vgg99"),
    (["--stage=prepare", "--frames=0"], "frames"),
    (["--stage=prepare", "--image_size=50"], "minimum of 75"),
    (["--stage=prepare", "--dataset=msrvtt"], "--annotations"),
    (["--stage=caption"], "--videos"),
    ([], "--stage is required"),
    (["--stage=prepare", "--workers=-1"], "--workers=-1 must be >= 0"),
    (["--stage=pretrain", "--dropout=1.5"], "--dropout=1.5 must be in [0, 1)"),
    (["--stage=prepare", "--flagfile=/nonexistent/x.cfg"], "error: Unable to open flagfile"),
    (["--stage=finetune", "--remat=everything"], "value should be one of <none|blocks|planned>"),
    (["--stage=finetune", "--remat=planned", "--finetune_blocks=0"],
     "--finetune_blocks=0 freezes the encoder"),
    (["--stage=all", "--remat=blocks", "--finetune_blocks=0"], "drop --remat"),
]


def assert_one_usage_line(result, needle):
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "ERROR:" not in lines[0]


@pytest.mark.parametrize("args,needle", BAD_FLAGS)
def test_bad_flags_give_one_line_and_exit_2(args, needle):
    assert_one_usage_line(run_cli(*args), needle)


@pytest.mark.parametrize("args,needle", [BAD_FLAGS[0], BAD_FLAGS[7], BAD_FLAGS[10]],
                         ids=["absl_parse", "config_check", "flagfile"])
def test_main_py_gives_one_line_and_exit_2(args, needle):
    """The entry point itself (absl's `app.run`, a fresh interpreter): a bad
    flag from absl's parser, one from the config's checks, a missing flagfile."""
    assert_one_usage_line(run_main(*args), needle)


def test_finetune_without_pretrain_exits_2(tmp_path):
    result = run_cli("--stage=finetune", f"--model_dir={tmp_path}/m",
                     f"--records_dir={tmp_path}/r")
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_missing_annotations_exit_1_with_message(tmp_path):
    result = run_cli("--stage=prepare", "--dataset=custom", f"--annotations={tmp_path}/x.csv",
                     f"--records_dir={tmp_path}/r")
    assert result.returncode == 1
    assert "annotation file not found" in result.stderr and "Traceback" not in result.stderr


def test_messages_keep_their_quotes(tmp_path):
    bad = tmp_path / "ann.jsonl"
    bad.write_text('{"video": "a.mp4"}\n')
    result = run_cli("--stage=prepare", "--dataset=custom", f"--annotations={bad}",
                     f"--records_dir={tmp_path}/r")
    assert result.returncode == 1
    assert error_lines(result) == [f"error: {bad}:1: needs keys 'video' and 'caption'"]


def test_batch_larger_than_the_split_is_an_error(shapes_records, tmp_path):
    """48 training videos, --batch_size=200: before, zero steps, "pretrain
    done" and exit 0 with best.json at step 0."""
    model_dir = tmp_path / "model"
    result = run_cli("--stage=pretrain", f"--records_dir={shapes_records.data.records_dir}",
                     f"--model_dir={model_dir}", "--batch_size=200", "--encoder_weights=none",
                     "--image_size=75")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = error_lines(result)
    assert len(errors) == 1 and "--batch_size=200 is larger than the 48 training videos" in \
        errors[0] and "--batch_size=48 or less" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr and not model_dir.exists()


@pytest.mark.parametrize("case", ["records_dir_is_a_file", "model_dir_is_a_file",
                                  "export_dir_is_a_file", "export_version_exists",
                                  "output_in_a_missing_dir", "attention_dir_is_a_file",
                                  "all_checks_the_export_first"])
def test_write_targets_are_checked_before_any_work(trained_model_dir, tmp_path, case):
    """Each bad write target is a `WriteTargetError` (one line, exit 2)
    naming the user's path, raised before any decoding, training,
    captioning or export."""
    from etenet_tf import files, jobs
    from etenet_tf.data import shapes
    cfg = trained_model_dir
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    existing = tmp_path / "exports" / "etenet" / "1"
    existing.mkdir(parents=True)
    (existing / "saved_model.pb").write_text("served")
    video = os.path.join(os.path.dirname(__file__), "data", "moviepy_bitmap.mp4")
    stage, overrides, path = {
        "records_dir_is_a_file": ("prepare", dict(records_dir=str(a_file)), a_file),
        "model_dir_is_a_file": ("pretrain", dict(model_dir=str(a_file)), a_file),
        "export_dir_is_a_file": ("export", dict(export_dir=str(a_file)), a_file),
        "export_version_exists": ("export", dict(export_dir=str(tmp_path / "exports"),
                                                 export_name="etenet", export_version=1),
                                  existing),
        "output_in_a_missing_dir": ("caption", dict(videos=[video],
                                                    output=str(tmp_path / "no" / "c.json")),
                                    tmp_path / "no"),
        "attention_dir_is_a_file": ("caption", dict(videos=[video], attention_dir=str(a_file)),
                                    a_file),
        "all_checks_the_export_first": ("all", dict(export_dir=str(a_file),
                                                    records_dir=str(tmp_path / "records"),
                                                    model_dir=str(tmp_path / "model")), a_file),
    }[case]
    generated = []
    real_generate = shapes.generate
    shapes.generate = lambda *a, **k: generated.append(a) or real_generate(*a, **k)
    try:
        with pytest.raises(files.WriteTargetError) as error:
            jobs.run(cfg.replace(stage=stage, **overrides))
    finally:
        shapes.generate = real_generate
    assert str(path) in str(error.value)
    assert not generated  # no work was done first
    assert (existing / "saved_model.pb").read_text() == "served"
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["a_file", "exports"] + (["records", "model"] if case.startswith("all") else []))


def test_caption_output_that_is_a_directory_fails_before_captioning(trained_model_dir,
                                                                    tmp_path):
    video = os.path.join(os.path.dirname(__file__), "data", "moviepy_bitmap.mp4")
    result = run_cli("--stage=caption", f"--model_dir={trained_model_dir.model_dir}",
                     f"--videos={video}", f"--output={tmp_path}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_lines(result) == [
        f"error: --output={tmp_path} is a directory; give a file name, e.g. "
        f"{tmp_path}/out.json"]
    assert result.stdout == "" and os.listdir(tmp_path) == []  # nothing captioned, no temp file


@pytest.mark.parametrize("stage,flag", [("pretrain", "model_dir"), ("export", "export_dir")])
def test_unwritable_directories_are_one_line(trained_model_dir, tmp_path, stage, flag):
    """A fresh `main.py` without root's capabilities (as a user runs it), so
    the directory's permission bits apply."""
    locked = read_only_dir(tmp_path / "read_only")
    cfg = trained_model_dir
    result = run_main(f"--stage={stage}", f"--records_dir={cfg.data.records_dir}",
                      f"--image_size={cfg.data.image_size}",
                      f"--model_dir={cfg.model_dir if flag != 'model_dir' else locked}",
                      f"--{flag}={locked}", preexec_fn=unprivileged())
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_lines(result) == [
        f"error: cannot write in --{flag}={locked} (Permission denied); make it writable or "
        "give another directory"], result.stderr[-3000:]


def test_shapes_clips_go_to_the_given_video_dir(shapes_records, tmp_path):
    import shutil

    from etenet_tf.data.sources import load_examples
    videos = tmp_path / "my_clips"
    # the session's clips, so that nothing needs generating
    shutil.copytree(os.path.join(os.path.dirname(shapes_records.data.records_dir), "shapes",
                                 "videos"), videos)
    cfg = shapes_records.replace(video_dir=str(videos), records_dir=str(tmp_path / "r"))
    examples = load_examples(cfg.data)
    assert len(examples) == 144
    assert {os.path.dirname(e.path) for e in examples} == {str(videos)}
    assert (videos / "annotations.jsonl").is_file()
    assert sorted(os.listdir(tmp_path)) == ["my_clips"]  # nothing beside it


def test_every_preset_parses_and_validates(monkeypatch):
    """Each `flags/*.cfg` (a flagfile may include another) gives a config
    whose sections validate, with the values the preset states."""
    from absl import flags

    from etenet_tf.cli import flags as flags_lib
    monkeypatch.chdir(ROOT)  # presets include each other by relative path
    flags_lib.define_flags()
    presets = {}
    try:
        for path in sorted(glob.glob("flags/*.cfg")):
            flags.FLAGS.unparse_flags()
            flags.FLAGS(["main.py", "--flagfile=" + path, "--stage=pretrain"])
            config = flags_lib.to_config()
            config.validate()
            presets[os.path.basename(path)] = config.to_flat()
    finally:
        flags.FLAGS.unparse_flags()
    assert {"shapes.cfg", "msrvtt.cfg", "msvd.cfg", "msrvtt_paper.cfg",
            "msvd_paper.cfg"} <= set(presets)
    for name in ("msrvtt", "msvd"):
        paper, base = presets[f"{name}_paper.cfg"], presets[f"{name}.cfg"]
        assert paper["batch_size"] * paper["gradient_accumulation_steps"] == base["batch_size"]
        assert (paper["remat"], paper["mixed_precision"]) == ("planned", "bfloat16")
        assert paper["encoder"] == base["encoder"] == "inception_resnet_v2"
        assert paper["records_dir"] == base["records_dir"]
    assert presets["shapes.cfg"]["spatial_grid"] == 3
