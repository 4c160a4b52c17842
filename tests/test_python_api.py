"""The README's "Python API" section runs as written."""

import os
import re
import shutil
import subprocess
import sys

from helpers import ROOT, data_path, python_env


def readme_python_api():
    """The Python code block of the README's "Python API" section."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section should hold one python block"
    return blocks[0]


def test_readme_python_api_runs_as_written(trained_model_dir, tmp_path, monkeypatch, capsys):
    """In this process (no process boundary is under test): the block runs
    as a script would, in a directory holding the files it names."""
    code = readme_python_api()
    # the files the example names: a trained model directory and a video
    os.makedirs(tmp_path / "runs" / "shapes")
    os.symlink(trained_model_dir.model_dir, tmp_path / "runs" / "shapes" / "model")
    shutil.copy(data_path("moviepy_example_mask.mp4"), tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    exec(compile(code, "README.md (Python API)", "exec"), {"__name__": "__main__"})
    # not stripped: the test model is barely trained, and its caption may be empty
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    caption, score = lines[-2].rsplit(" ", 1)
    assert float(score) < 0 and all(w.isalnum() for w in caption.split())
    assert "CIDEr" in lines[-1] and "Bleu_4" in lines[-1]


def test_every_public_name_resolves_from_the_one_table():
    """`etenet_tf.exports.PUBLIC` is the only list of public names: each
    package's `__all__` is its row, every entry imports, and `dir()` shows
    the names before they are imported."""
    import importlib

    from etenet_tf import exports
    for package, table in exports.PUBLIC.items():
        module = importlib.import_module(package)
        assert set(module.__all__) - {"__version__"} == set(table)
        assert set(table) <= set(dir(module))
        for name in table:
            assert getattr(module, name) is exports.resolve(package, name)
    assert not hasattr(importlib.import_module("etenet_tf.model"), "nothing")


def test_importing_the_packages_imports_no_tensorflow():
    """The packages import their names on first use, so a decode worker's
    `import etenet_tf.data.video_decode` (and `import etenet_tf.model`)
    loads neither TensorFlow nor Keras; reading a model name does."""
    code = ("import sys, etenet_tf, etenet_tf.model, etenet_tf.training\n"
            "import etenet_tf.data.video_decode\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
            "etenet_tf.model.SoftAttentionLSTM\n"
            "print('keras' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=python_env(), timeout=120, check=True).stdout.split()
    assert out == ["False", "False", "True"]
