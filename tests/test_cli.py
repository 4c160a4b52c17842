import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.mark.parametrize("args,needle", [
    (["--stage=fly"], "stage"),
    (["--stage=prepare", "--dataset=imagenet"], "dataset"),
    (["--stage=pretrain", "--encoder=vgg99"], "vgg99"),
    (["--stage=prepare", "--frames=0"], "frames"),
    (["--stage=prepare", "--image_size=50"], "minimum of 75"),
    (["--stage=prepare", "--dataset=msrvtt"], "--annotations"),
    (["--stage=caption"], "--videos"),
    ([], "--stage is required"),
])
def test_bad_flags_give_one_line_and_exit_2(args, needle):
    result = run_main(*args)
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_finetune_without_pretrain_exits_2(tmp_path):
    result = run_main("--stage=finetune", f"--model_dir={tmp_path}/m",
                      f"--records_dir={tmp_path}/r")
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_missing_annotations_exit_1_with_message(tmp_path):
    result = run_main("--stage=prepare", "--dataset=custom", f"--annotations={tmp_path}/x.csv",
                      f"--records_dir={tmp_path}/r")
    assert result.returncode == 1
    assert "annotation file not found" in result.stderr and "Traceback" not in result.stderr
