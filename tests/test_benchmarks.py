"""The benchmarks run end to end at toy sizes and report every figure, and
the quality benchmarks' driver runs with `main.py` replaced by a recorder.

(Their numbers are not checked here: speed targets live in the benchmark
output, not in timed tests.) The end-to-end run is marked `slow`: it runs
every benchmark, some in fresh processes; the README's test command
(`-m "not slow"`) leaves it out and CI runs it after (`-m slow`).
"""

import json
import math

import pytest

from benchmarks import run


@pytest.mark.slow
def test_benchmarks_run_and_report(tmp_path, capsys):
    output = tmp_path / "results.json"
    run.main([
        f"--output={output}", f"--work_dir={tmp_path / 'work'}",
        f"--shared_dir={tmp_path / 'no_shared'}",  # decode falls back to tests/data
        "--frames=2", "--image_size=75", "--pretrain_image_size=75", "--batch_size=4",
        "--train_per_combination=1", "--caption_image_size=75", "--caption_batch=1",
        "--beam_size=2", "--max_length=3", "--vocabulary_size=50",
        "--grid_image_size=139", "--grid_frames=2", "--grids=1,3",  # 3x3 final map at 139 px
        "--library_clips=6", "--library_image_size=75", "--library_frames=2",
        "--library_batch=2", "--library_workers=1", "--library_rounds=1", "--library_rss_clips=2,6",
        "--library_rss_image_size=75", "--library_rss_frames=2",
        "--beam_repeats=1", "--beam_videos_per_shard=2",
        # one fresh process: a remat finetune step
        "--memory_image_size=75", "--memory_frames=2", "--memory_batch_sizes=1",
        "--memory_configs=f32_planned", "--memory_repeats=1",
        "--epoch_end_step_seconds=0", "--epoch_end_epochs=1",
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
    beam = by_name["beam_prepare"][0]
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        assert beam["skipped"] == 'apache-beam not installed (pip install -e ".[beam]")'
    else:
        assert beam["details"]["videos"] >= 4 and beam["details"]["identical_files"]
    grids = by_name["grid_cost"][0]["details"]["grids"]
    # 2 frames x 3 x 3 cells x 2048 float32 channels, and the same per cell for grid 1
    assert grids["grid 3"]["memory_tokens"] == 18 and grids["grid 1"]["memory_tokens"] == 2
    for grid in (1, 3):  # the float32 features plus under 2 KB of id and captions per clip
        floats_mb = 2 * grid * grid * 2048 * 4 / 1e3
        assert floats_mb < grids[f"grid {grid}"]["cache_mb_per_1000_clips"] < floats_mb + 2
    scst = by_name["scst_reward"][0]["details"]
    assert scst["reward_seconds"] > 0 and scst["step_seconds"] > scst["reward_seconds"]
    assert set(by_name["grid_cost"][0]["details"]["temporal"]) == {
        f"grid {g}, {t}" for g in (1, 3) for t in ("none", "position", "conv", "gru")}
    library = by_name["caption_library"]
    assert len(library) == 3 and library[0]["details"]["captioned"] == 6
    assert library[2]["details"]["captioned"] == {"2": 2, "6": 6}
    memory = by_name["finetune_memory"][0]["details"]["configs"]["f32_planned"]
    assert "--remat=planned: " in memory["plan"] and memory["parameters"] > 1e6
    step = memory["batches"]["1"]
    assert step["peak_minus_before_mb"] > 0 and step["step_seconds"] > 0
    assert step["images_per_step"] == 2 and step["step_cpu_seconds"] > 0
    epoch_end = by_name["epoch_end"][0]["details"]
    assert len(epoch_end["wait_seconds_now"]) == len(epoch_end["wait_seconds_before"]) == 1
    table = capsys.readouterr().out
    assert "pretrain epoch: cached features vs frozen encoder" in table and "skipped:" in table


@pytest.fixture
def recorded_main(monkeypatch):
    """`benchmarks/quality.py` with `main.py` replaced by a recorder: returns
    the list of every call's arguments; an evaluation writes scores of its
    seed / 10."""
    import os

    from benchmarks import quality, scenes_quality
    calls = []

    def fake_main(args, log):
        flags = dict(a[2:].split("=", 1) for a in args if "=" in a)
        calls.append(args)
        if flags.get("stage") == "evaluate":
            seed = int(flags["model_dir"].rsplit("seed", 1)[1])
            out = os.path.join(flags["model_dir"], "evaluation")
            os.makedirs(out, exist_ok=True)
            scores = {m: seed / 10 for m in scenes_quality.METRICS}
            with open(os.path.join(out, f"{flags['checkpoint']}_test_scores.json"), "w") as f:
                json.dump(scores, f)
            with open(os.path.join(out, f"{flags['checkpoint']}_test_predictions.json"),
                      "w") as f:
                json.dump({"records": flags["records_dir"]}, f)
        return 2.0

    monkeypatch.setattr(quality, "run_main", fake_main)
    return calls


def test_quality_driver_evaluates_with_the_variants_flags_resumes_and_summarises(
        tmp_path, recorded_main, capsys):
    """Every evaluation carries its variant's model flags (the preset's alone
    contradict the stored model: exit 2), each keeps its captions, a second
    call trains nothing, and the summary is min / median / max over the
    seeds."""
    from benchmarks import scenes_quality
    calls = recorded_main
    weights = tmp_path / "standin.weights.h5"
    weights.write_bytes(b"")
    argv = [f"--work_dir={tmp_path / 'work'}", f"--output={tmp_path / 'out.json'}",
            f"--standin_weights={weights}", "--variants=standin_paper,preset",
            "--seeds=0,1,5", "--stages=pretrain,finetune"]
    table = scenes_quality.main(argv)
    evaluations = [c for c in calls if "--stage=evaluate" in c]
    assert len(evaluations) == 2 * 3 * 2 * 2  # variants x seeds x stages x test sets
    for call in evaluations:
        variant = "standin_paper" if "standin_paper_seed" in " ".join(call) else "preset"
        expected = scenes_quality.VARIANTS[variant][-2:]  # its grid and temporal flags
        assert all(flag in call for flag in expected), call
        assert (f"--encoder_weights={weights}" in call) == (variant == "standin_paper")
    kept = tmp_path / "work" / "preset_seed1" / "predictions_finetune_unseen.json"
    assert json.loads(kept.read_text())["records"].startswith(str(tmp_path / "work" / "unseen"))
    assert table["preset"]["finetune"]["unseen"]["acc_all"] == [0.0, 0.1, 0.5, 3]
    assert table["preset"]["seconds"]["pretrain"] == [2.0, 2.0, 2.0, 3]
    assert "| preset | finetune | unseen | 3 |" in capsys.readouterr().out
    calls.clear()
    scenes_quality.main(argv)  # everything is kept: only the two prepares run again
    assert len(calls) == 2 and all("--stage=prepare" in c for c in calls)


def test_a_variant_with_a_prepare_flag_trains_on_records_of_its_own(tmp_path, recorded_main):
    """`hires_grid8` (`--image_size=150`) is prepared, trained and evaluated
    on 150 px records, not on the preset's 75 px ones scaled up."""
    from benchmarks import scenes_quality
    scenes_quality.main([f"--work_dir={tmp_path}", f"--output={tmp_path / 'out.json'}",
                         "--variants=preset,hires_grid8", "--seeds=0", "--stages=pretrain"])
    prepares = [c for c in recorded_main if "--stage=prepare" in c]
    assert len(prepares) == 4  # the preset's and the variant's, each with its unseen clips
    hires = [c for c in prepares if "--image_size=150" in c]
    assert [c for c in hires if f"--records_dir={tmp_path / 'records_image_size150'}" in c]
    assert [c for c in hires if
            f"--records_dir={tmp_path / 'unseen' / 'records_image_size150'}" in c]
    for call in recorded_main:
        if "--stage=prepare" in call:
            continue
        own = any(a.startswith("--records_dir=") and "records_image_size150" in a for a in call)
        assert own == ("hires_grid8_seed0" in " ".join(call)), call


def test_scenes_probe_reads_a_slot_that_is_in_the_features_and_not_one_that_is_not():
    """The probe finds a label written into the features (one-hot plus
    noise) and stays near chance on labels the features do not hold."""
    import numpy as np

    from benchmarks import scenes_probe
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    features = np.eye(4)[labels] + rng.normal(0, 0.2, (400, 4))
    features = np.concatenate([features, rng.normal(0, 1, (400, 60))], 1).astype(np.float32)
    for kind in ("linear", "rbf"):
        held, _ = scenes_probe.probe(features[:300], labels[:300], features[300:], labels[300:],
                                     kind)
        assert held > 0.9, kind
        unrelated = rng.integers(0, 4, 400)
        absent, _ = scenes_probe.probe(features[:300], unrelated[:300], features[300:],
                                       unrelated[300:], kind)
        assert absent < 0.45, kind


def test_scenes_probe_reads_a_feature_cache(tmp_path):
    """`load_features` reads the shards pretrain's feature cache writes."""
    import numpy as np

    from benchmarks import scenes_probe
    from etenet_tf.data import records
    features = np.arange(2 * 3 * 2 * 2 * 5, dtype=np.float32).reshape(2, 3, 2, 2, 5)
    examples = [records.features_example(f"train_{i}.mp4", features[i], [b"a caption"])
                for i in range(2)]
    records.write_atomically(str(tmp_path / "train-00000-of-00001.tfrecord"), iter(examples))
    ids, loaded = scenes_probe.load_features(str(tmp_path), "train")
    assert ids == ["train_0.mp4", "train_1.mp4"]
    np.testing.assert_array_equal(loaded, features)
    with pytest.raises(SystemExit, match="no val features"):
        scenes_probe.load_features(str(tmp_path), "val")


def test_scenes_probe_takes_the_cell_that_holds_each_object():
    """`object_cells` returns the first frame's cell under each object that
    is alone in its cell (positions regenerated from the scenes seed)."""
    import numpy as np

    from benchmarks import scenes_probe
    from etenet_tf.data import scenes
    ids, grid, size = [f"train_{i:04d}.mp4" for i in range(6)], 3, 96
    features = np.zeros((len(ids), 2, grid, grid, 5), np.float32)
    expected = []
    for n in range(len(ids)):
        scene, _ = scenes.make_scene(7, 0, n, size)
        where = [(int(o["y"] * grid / size), int(o["x"] * grid / size))
                 for o in scene["objects"]]
        for obj, (row, column) in zip(scene["objects"], where):
            features[n, 0, row, column] = scenes.SHAPES.index(obj["shape"]) + 1
            if where.count((row, column)) == 1:
                expected.append(obj)
    cells, objects = scenes_probe.object_cells(ids, features, seed=7, size=size)
    assert objects == expected and len(objects) >= 6
    assert [int(c[0]) - 1 for c in cells] == [scenes.SHAPES.index(o["shape"]) for o in objects]


def test_scenes_mentions_tells_the_subject_from_another_object_of_the_clip(tmp_path):
    """A reference caption names the subject; one naming another object of
    the clip names some object of the clip but not the subject; a name that
    is not a scenes clip, or clips of another seed than the records', is
    one line and exit status 2."""
    import json

    from benchmarks import scenes_mentions
    from etenet_tf.data import scenes
    truth, other = {}, {}
    for index in range(8):
        scene, _ = scenes.make_scene(5, 2, index, 96)
        video = f"test_{index:04d}.mp4"
        truth[video] = scenes.captions_for(scene, 96)[0]
        bystander = next(o for i, o in enumerate(scene["objects"])
                         if i != scene["events"][0][0])
        other[video] = f"the {scenes.noun(bystander)} moves left"
    right = scenes_mentions.mentions(truth, seed=5, size=96)
    assert right["subject all"] == right["named"] == 1.0
    wrong = scenes_mentions.mentions(other, seed=5, size=96)
    assert wrong["subject all"] == 0.0 and wrong["some object's colour and shape"] == 1.0
    assert 0 < wrong["random: some object's colour"] < 1
    attributes = {v: scenes.truth_of(scenes.make_scene(5, 2, int(v[5:9]), 96)[0], 96)
                  for v in truth}
    (tmp_path / "attributes.json").write_text(json.dumps({"videos": attributes}))
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(truth))
    assert scenes_mentions.main([str(path), f"--records={tmp_path}", "--scenes_seed=5"])[
        "subject all"] == 1.0
    for predictions, seed in (({"clip.mp4": "the small red circle moves left"}, 5),
                              (truth, 6)):  # not a scenes name; another seed's clips
        path.write_text(json.dumps(predictions))
        with pytest.raises(SystemExit) as exit_info:
            scenes_mentions.main([str(path), f"--records={tmp_path}", f"--scenes_seed={seed}"])
        assert exit_info.value.code == 2


def test_scenes_event_errors_tell_a_wrong_kind_of_action_and_a_missing_second_event():
    """Reference captions get every action and second event right; captions
    that call every first event "moves left" and stop there get a direction
    right only when it is left, every relation and size change wrong by
    kind, and no second event."""
    from benchmarks import scenes_mentions
    from etenet_tf.data import scenes
    references, moved_left = {}, {}
    for index in range(40):
        scene, _ = scenes.make_scene(5, 2, index, 96)
        video = f"test_{index:04d}.mp4"
        references[video] = scenes.captions_for(scene, 96)[index % 6]
        subject = scene["objects"][scene["events"][0][0]]
        moved_left[video] = f"the {scenes.noun(subject)} moves left"
    right = scenes_mentions.event_errors(references, seed=5, size=96)
    kinds = right["action kinds"]
    assert all(kinds[k]["clips"] > 0 and kinds[k]["right"] == 1.0 for k in kinds)
    assert sum(sum(said.values()) for said in right["actions"].values()) == 40
    second = right["second event"]
    assert second["clips with one event"] > 0 and second["clips with two events"] > 0
    assert second["said one event"] == second["said two events"] == 1.0
    assert second["second actor right"] == second["second action right"] == 1.0
    wrong = scenes_mentions.event_errors(moved_left, seed=5, size=96)
    kinds = wrong["action kinds"]
    lefts = wrong["actions"]["moves left"].get("moves left", 0)
    assert kinds["direction"]["right"] == lefts / kinds["direction"]["clips"] < 1
    assert kinds["relation"]["other kind"] == kinds["change"]["other kind"] == 1.0
    assert wrong["second event"]["said two events"] == 0.0
    assert wrong["second event"]["said one event"] == 1.0


def test_each_encoder_a_variant_needs_is_built_once_when_missing(tmp_path, monkeypatch):
    """The stand-in is built with the defaults, the diagnostic shapes
    encoder with `--objects=scenes`, the small-glyph stand-in with its
    radius, each only for variants that use it and only when its file is
    missing."""
    import argparse

    from benchmarks import scenes_quality
    built = []
    monkeypatch.setattr(scenes_quality.subprocess, "run", lambda cmd, **_: built.append(cmd))
    args = argparse.Namespace(standin_weights=str(tmp_path / "a.weights.h5"),
                              shapes_encoder_weights=str(tmp_path / "b.weights.h5"),
                              small_standin_weights=str(tmp_path / "c.weights.h5"))
    scenes_quality.build_standin(args, ["preset", "shapesenc_data3000_e60"])
    assert len(built) == 1 and "--objects=scenes" in built[0]
    assert f"--output={args.shapes_encoder_weights}" in built[0]
    built.clear()
    (tmp_path / "b.weights.h5").write_bytes(b"")
    scenes_quality.build_standin(args, ["standin_data3000_e60", "shapesenc_data3000_e60"])
    assert built == [[*built[0][:3], f"--output={args.standin_weights}"]]
    built.clear()
    scenes_quality.build_standin(args, ["smallstandin_delta_data3000_e60"])
    assert built == [[*built[0][:3], f"--output={args.small_standin_weights}",
                      "--glyph_radius=0.038,0.17"]]
