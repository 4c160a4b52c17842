"""The benchmarks run end to end at toy sizes and report every figure.

(Their numbers are not checked here: speed targets live in the benchmark
output, not in timed tests.)
"""

import json
import math

from benchmarks import run


def test_benchmarks_run_and_report(tmp_path, capsys):
    output = tmp_path / "results.json"
    run.main([
        f"--output={output}", f"--work_dir={tmp_path / 'work'}",
        f"--shared_dir={tmp_path / 'no_shared'}",  # decode falls back to tests/data
        "--frames=2", "--image_size=75", "--pretrain_image_size=75", "--batch_size=4",
        "--train_per_combination=1", "--caption_image_size=75", "--caption_batch=1",
        "--beam_size=2", "--max_length=3", "--vocabulary_size=50",
    ])
    report = json.loads(output.read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["tensorflow"]
    by_name = {}
    for result in report["results"]:
        by_name.setdefault(result["benchmark"], []).append(result)
    assert sorted(by_name) == sorted(run.BENCHMARKS)
    assert len(by_name["finetune_compute"]) == 2
    assert "skipped" in by_name["scoring"][0]  # needs the MSR-VTT test annotations
    for result in report["results"]:
        if "skipped" in result:
            continue
        assert result["met"] in (True, False, None)
        # (at toy sizes the captioning overhead can come out below zero: noise)
        assert result["ratio"] is None or math.isfinite(result["ratio"])
    details = by_name["finetune_compute"][0]["details"]
    # InceptionV3 at 75 px: about 0.35 GFLOP per frame forward (5.7 at 299)
    assert 0.2 < details["encoder_forward_gflop_per_frame"] < 0.6
    assert by_name["decode"][0]["details"]["videos"] >= 4
    table = capsys.readouterr().out
    assert "pretrain epoch: cached features vs frozen encoder" in table and "skipped:" in table
