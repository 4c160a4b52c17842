"""The scenes benchmark: generation, role-aware attributes, the stand-in
encoder and its weights file, and a tiny scenes run."""

import filecmp
import json
import os

import h5py
import keras
import numpy as np
import pytest

from etenet_tf import jobs
from etenet_tf.data import attributes as attributes_data
from etenet_tf.data import scenes
from etenet_tf.data.examples import VideoExample
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.errors import UsageError
from etenet_tf.evaluation import attributes

from conftest import tiny_cfg
from helpers import error_lines, run_main

SLOTS = ("subject", "action", "object", "region", "order")


def _examples(count, seed=11):
    out = []
    for i in range(count):
        scene, _ = scenes.make_scene(seed, 0, i, 96)
        ex = VideoExample(f"v{i}", "train", scenes.captions_for(scene, 96))
        ex.attributes = scenes.attributes_for(scene, 96)
        out.append((ex, scenes.truth_of(scene, 96)))
    return out


def test_generation_is_deterministic_and_seeded(tmp_path):
    kwargs = dict(videos=(3, 2, 2), num_frames=4, size=64)
    a = scenes.generate(str(tmp_path / "a"), seed=5, **kwargs)
    b = scenes.generate(str(tmp_path / "b"), seed=5, **kwargs)
    c = scenes.generate(str(tmp_path / "c"), seed=6, **kwargs)
    assert open(a).read() == open(b).read() != open(c).read()
    names = sorted(os.listdir(tmp_path / "a" / "videos"))
    assert names == ["test_0000.mp4", "test_0001.mp4", "train_0000.mp4", "train_0001.mp4",
                     "train_0002.mp4", "val_0000.mp4", "val_0001.mp4"]
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a" / "videos",
                                               tmp_path / "b" / "videos", names, shallow=False)
    assert match == names and not mismatch and not errors
    rows = [json.loads(line) for line in open(a)]
    assert all(set(r["attributes"]) == set(SLOTS) and len(r["caption"]) == 6 for r in rows)


def test_scenes_cover_every_event_and_two_event_clips():
    truths = [t for _, t in _examples(300)]
    assert {t["action"] for t in truths} == set(scenes.ACTIONS)
    assert {t["region"] for t in truths} == set(scenes.REGIONS)
    two = sum(t["order"] != "none" for t in truths)
    assert 0.35 < two / len(truths) < 0.65
    assert all((t["object"] != "none") == (t["action"] in scenes.RELATIONS) for t in truths)


def test_every_caption_parses_back_to_its_clips_truth():
    pairs = _examples(150)
    content = attributes_data.collect([ex for ex, _ in pairs])
    for (ex, truth) in pairs:
        assert content["videos"][ex.video_id] == truth
    for k in range(6):
        predictions = {ex.video_id: ex.captions[k] for ex, _ in pairs}
        scores = attributes.accuracy(predictions, content["videos"], content["spec"])
        assert scores == {f"acc_{s}": 1.0 for s in (*SLOTS, "all")}, (k, scores)


def test_paraphrases_differ_in_wording_and_order():
    for ex, truth in _examples(60):
        assert len(set(ex.captions)) == len(ex.captions) == 6
        assert len({c.split()[0] + c.split()[1] for c in ex.captions}) >= 2  # word order
        if truth["order"] != "none":
            joined = " ".join(ex.captions)
            assert all(w in joined for w in ("then", "after that", "before", " after "))
        if truth["action"] in scenes.PASSIVE:
            assert any(scenes.PASSIVE[truth["action"]] in c for c in ex.captions)


SPEC = {
    "subject": {"small red circle": ["small red circle", "little red circle"],
                "large blue square": ["large blue square"]},
    "object": {"large blue square": ["large blue square"], "none": ["none"]},
    "action": {"moves towards": ["moves towards", "is approached by"], "grows": ["grows"],
               "moves left": ["moves left"]},
    "region": {"top left": ["top left"], "bottom right": ["bottom right"]},
    "order": {"large blue square grows": ["large blue square grows"], "none": ["none"]},
}
TRUTH = {"v": {"subject": "small red circle", "action": "moves towards",
               "object": "large blue square", "region": "top left",
               "order": "large blue square grows"}}


@pytest.mark.parametrize("caption,wrong", [
    ("the small red circle in the top left moves towards the large blue square then the large "
     "blue square grows", set()),
    ("the large blue square is approached by the little red circle in the top left before the "
     "large blue square grows", set()),
    ("the large blue square grows after the small red circle in the top left moves towards the "
     "large blue square", set()),
    # the events swapped: the first event is wrong, and so is what happens second
    ("the large blue square grows then the small red circle in the top left moves towards the "
     "large blue square", {"subject", "action", "object", "region", "order"}),
    # roles swapped (active voice read as passive)
    ("the large blue square in the top left moves towards the small red circle then the large "
     "blue square grows", {"subject", "object"}),
    ("the small red circle in the bottom right moves towards the large blue square then the "
     "large blue square grows", {"region"}),
    ("the small red circle in the top left moves towards the large blue square",
     {"order"}),
    ("the small red circle in the top left moves left then the large blue square grows",
     {"action", "object"}),
    ("", set(SLOTS)),
])
def test_role_slots_are_checked_where_they_occur(caption, wrong):
    scores = attributes.accuracy({"v": caption}, TRUTH, SPEC)
    assert {s for s in SLOTS if scores[f"acc_{s}"] == 0.0} == wrong
    assert scores["acc_all"] == float(not wrong)


def test_custom_jsonl_role_attributes_are_matched(tmp_path):
    rows = [{"video": "a.mp4", "caption": "x", "split": "test", "attributes": {
        "subject": ["small red circle", "little red circle"], "action": "moves left",
        "object": "none", "region": "top left", "order": "none"}},
            {"video": "b.mp4", "caption": "y", "split": "test", "attributes": {
        "subject": "large blue square", "action": ["grows", "gets bigger"], "object": "none",
        "region": "bottom right", "order": "small red circle moves left"}}]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    content = attributes_data.collect(load_custom(str(path), str(tmp_path)))
    scores = attributes.accuracy(
        {"a.mp4": "the little red circle in the top left moves left",
         "b.mp4": "the large blue square in the bottom right gets bigger after that the small red "
                  "circle moves left"}, content["videos"], content["spec"])
    assert scores["acc_all"] == 1.0
    scores = attributes.accuracy(
        {"a.mp4": "the little red circle in the top left moves left then it grows",
         "b.mp4": "the small red circle moves left then the large blue square in the bottom "
                  "right gets bigger"}, content["videos"], content["spec"])
    assert scores["acc_all"] == scores["acc_order"] == 0.0 and scores["acc_subject"] == 0.5


@pytest.mark.parametrize("change,needle", [
    (dict(scenes_max_objects=4), "--scenes_max_objects=4 must be in [2, 3]"),
    (dict(scenes_clutter=1.5), "--scenes_clutter=1.5 must be in [0, 1]"),
    (dict(scenes_train_videos=0), "--scenes_train_videos=0 must be in [1, 99999]"),
    (dict(scenes_seed=-1), "--scenes_seed=-1 must be >= 0"),
])
def test_bad_scenes_values_are_one_line_usage_errors(tmp_path, change, needle):
    with pytest.raises(UsageError) as error:
        jobs.run(tiny_cfg(str(tmp_path), dataset="scenes", **change))
    assert str(error.value) == needle and error.value.exit_code == 2
    assert not os.path.exists(tmp_path / "records") and not os.path.exists(tmp_path / "scenes")


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """A stand-in encoder trained for a few steps (the real one: docs/scenes.md)."""
    from benchmarks import standin_encoder
    path = str(tmp_path_factory.mktemp("standin") / "standin.weights.h5")
    report = standin_encoder.train(path, images=16, epochs=1, batch_size=8, log=lambda _: None)
    return path, report


def test_standin_batchnorm_statistics_are_those_of_its_training_images():
    """Training leaves the moving statistics a momentum-0.99 average near
    their start (mean 0, variance 1); the stand-in sets them to the
    average batch statistics, so a frozen encoder's inference-mode
    features are the trained network's."""
    from benchmarks import standin_encoder
    images = np.random.default_rng(0).uniform(0, 255, (24, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3)
    norm = keras.layers.BatchNormalization()
    backbone = keras.Model(inputs, norm(conv(inputs)))
    classifier = keras.Sequential([backbone, keras.layers.GlobalAveragePooling2D(),
                                   keras.layers.Dense(2)])
    standin_encoder.calibrate_batchnorm(classifier, backbone, images, batch_size=8)
    activations = np.asarray(conv(images)).reshape(3, -1, 4)  # 3 batches of 8 images
    np.testing.assert_allclose(norm.moving_mean.numpy(), activations.mean(1).mean(0),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.moving_variance.numpy(), activations.var(1).mean(0),
                               rtol=1e-3)
    assert norm.momentum == 0.99


def test_standin_scenes_objects_are_the_scenes_shapes_upright():
    """`--objects=scenes` draws the clips' own 5 shapes as the clips do
    (upright); the glyphs keep their turn."""
    from benchmarks import standin_encoder
    from etenet_tf.data import scenes
    assert standin_encoder.classes("scenes") == scenes.SHAPES
    yy, xx = np.mgrid[-10:11, -10:11].astype(np.float32)
    for label, shape in enumerate(scenes.SHAPES):
        np.testing.assert_array_equal(
            standin_encoder._object_mask("scenes", label, xx, yy, 8.0, angle=1.0),
            scenes.shape_mask(shape, xx, yy, 8.0))
    glyph = standin_encoder._object_mask("glyphs", 4, xx, yy, 8.0, angle=1.0)  # a bar, turned
    assert not np.array_equal(glyph, standin_encoder._object_mask("glyphs", 4, xx, yy, 8.0, 0.0))
    _, labels, _ = standin_encoder.render_images(12, 32, 3, (0.05, 0.1), "scenes")
    assert set(labels.tolist()) <= set(range(len(scenes.SHAPES)))


def _features(weights, frames):
    from etenet_tf.model.encoder import FrameEncoder
    encoder = FrameEncoder("inception_v3", 75, 2, "mixed2", weights)
    return encoder, np.asarray(encoder(frames))


def test_standin_weights_load_through_encoder_weights_and_survive_save_load(standin, tmp_path):
    path, report = standin
    assert report["classes"][0] == "ring" and os.path.isfile(path[:-len(".weights.h5")] + ".json")
    assert report["colour_weight"] == 0.5 and 0 <= report["held_out_colour_accuracy"] <= 1
    frames = np.random.default_rng(0).integers(0, 256, (1, 2, 75, 75, 3)).astype("float32")
    encoder, loaded = _features(path, frames)
    model = keras.Sequential([keras.Input(frames.shape[1:]), encoder])
    model.save(str(tmp_path / "encoder.keras"))
    reloaded = keras.saving.load_model(str(tmp_path / "encoder.keras"))(frames)
    np.testing.assert_array_equal(loaded, np.asarray(reloaded))
    _, random = _features(None, frames)
    assert np.abs(loaded - random).max() > 1e-3  # the file's weights were really loaded


def _bad_weights(kind, good, tmp_path):
    path = str(tmp_path / f"{kind}.weights.h5")
    if kind == "truncated":
        data = open(good, "rb").read()
        open(path, "wb").write(data[:len(data) // 3])
    elif kind == "other_network":
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save_weights(path)
    else:  # other layer shapes: the first convolution's kernel made wider
        with open(good, "rb") as src, open(path, "wb") as dst:
            dst.write(src.read())
        with h5py.File(path, "r+") as f:
            name = "layers/conv2d/vars/0"
            shape = f[name].shape
            del f[name]
            f[name] = np.zeros(shape[:-1] + (shape[-1] + 1,), np.float32)
    return path


@pytest.mark.parametrize("kind,reason", [
    ("truncated", "not a complete HDF5 file: truncated or damaged"),
    ("other_network", "could not be loaded"),
    ("other_shapes", "1 layers could not be loaded, e.g. conv2d"),
])
def test_weights_files_that_do_not_fit_are_one_line_usage_errors(standin, tmp_path, kind,
                                                                    reason):
    from etenet_tf.model.encoder import EncoderWeightsMismatchError, build_backbone
    path = _bad_weights(kind, standin[0], tmp_path)
    with pytest.raises(EncoderWeightsMismatchError) as error:
        build_backbone("inception_v3", 75, "mixed2", path)
    message = str(error.value)
    assert "\n" not in message and error.value.exit_code == 2
    assert message.startswith(f"encoder weights {path} do not fit inception_v3") and \
        reason in message and "--encoder_weights=none" in message
    if kind == "other_shapes":
        assert "value.shape=(3, 3, 3, 33)" in message


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory):
    """Tiny scenes records (12 / 6 / 6 clips) and a 2-epoch pretrain on them."""
    tmp = str(tmp_path_factory.mktemp("scenes"))
    cfg = tiny_cfg(tmp, dataset="scenes", scenes_train_videos=12, scenes_eval_videos=6)
    jobs.run(cfg)
    jobs.run(cfg.replace(stage="pretrain"))
    return cfg


def test_a_tiny_scenes_run_trains_and_scores_every_slot(scenes_run):
    cfg = scenes_run
    with open(os.path.join(cfg.data.records_dir, "attributes.json")) as f:
        assert set(json.load(f)["spec"]) == set(SLOTS)
    jobs.run(cfg.replace(stage="evaluate", checkpoint="pretrain"))
    with open(os.path.join(cfg.model_dir, "evaluation", "pretrain_test_scores.json")) as f:
        scores = json.load(f)
    assert {f"acc_{s}" for s in (*SLOTS, "all")} | {"CIDEr"} <= set(scores)


def test_pretrain_with_a_truncated_weights_file_exits_2_writing_nothing(scenes_run, standin,
                                                                       tmp_path):
    bad = _bad_weights("truncated", standin[0], tmp_path)
    model_dir = tmp_path / "model"
    result = run_main(*scenes_run.replace(stage="pretrain", model_dir=str(model_dir),
                                          encoder_weights=bad).to_argv())
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "truncated or damaged" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    # (the stage's lock file is all there is: no model, no checkpoint, no cache)
    written = [p.name for p in model_dir.rglob("*") if p.is_file()]
    assert set(written) <= {".lock"}, written


def test_a_clip_name_gives_back_its_scene():
    """`scene_of_clip` regenerates the scene `generate` wrote under a name,
    and refuses names `generate` does not write."""
    assert scenes.scene_of_clip("val_0007.mp4", 11, 96) == scenes.make_scene(11, 1, 7, 96)[0]
    for name in ("clip.mp4", "val_7.mp4", "val_0007.avi", "dev_0007.mp4"):
        with pytest.raises(ValueError, match="not a scenes clip name"):
            scenes.scene_of_clip(name, 11, 96)


def test_oracle_features_hold_each_objects_truth_where_it_is():
    """A perfect encoder's view: in the `cells` layout every object's colour,
    shape and size are in the cell that holds its centre at each sampled
    frame (the subject's position follows its event); in `objects`, object
    k is in slot k; channels past the object's 18 numbers stay 0."""
    from benchmarks import scenes_oracle
    from etenet_tf.data import video_decode
    scene = scenes.make_scene(11, 0, 3, 96)[0]
    objects = scene["objects"]
    states = scenes.object_states(scene, 24)
    cells = scenes_oracle.oracle_features(scene, layout="cells", num_frames=4, grid=3,
                                          channels=32)
    assert cells.shape == (4, 3, 3, 32) and not cells[..., 18:].any()
    for t, index in enumerate(video_decode.sample_indices(24, 4)):
        assert cells[t, ..., 17].sum() == len(objects)  # one presence per object
        for obj, (x, y, _) in zip(objects, states[index]):
            cell = cells[t, min(int(y * 3 / 96), 2), min(int(x * 3 / 96), 2)]
            assert cell[list(scenes.COLOURS).index(obj["colour"])] >= 1
            assert cell[7 + scenes.SHAPES.index(obj["shape"])] >= 1
    first, last = states[video_decode.sample_indices(24, 4)[0]], states[
        video_decode.sample_indices(24, 4)[-1]]
    assert first[scene["events"][0][0]] != last[scene["events"][0][0]]
    slots = scenes_oracle.oracle_features(scene, layout="objects", num_frames=4, grid=3,
                                          channels=18)
    for k, obj in enumerate(objects):
        row, col = divmod(k, 3)
        np.testing.assert_array_equal(
            slots[0, row, col], scenes_oracle.object_vector(obj, first[k], 96))
    assert not slots[:, 2].any()  # (at most 3 objects: the last row is empty)


def test_the_oracle_benchmark_trains_on_oracle_features_scores_and_resumes(
        scenes_run, tmp_path, monkeypatch):
    """scenes_oracle writes feature records beside the frame records' names,
    pretrains the preset's decoder on them, scores its best checkpoint on the
    test and unseen clips (every slot, which object the captions name and
    what they get wrong about the events), a second run reuses the saved
    result, and a result saved without the event errors is scored again
    from the best checkpoint without training again."""
    from benchmarks import quality, scenes_oracle
    from etenet_tf.data import records
    flagfile = tmp_path / "tiny.cfg"
    flagfile.write_text("\n".join(scenes_run.replace(stage="").to_argv()) + "\n")
    records_dir = scenes_run.data.records_dir
    monkeypatch.setattr(quality, "prepare", lambda *_: (records_dir, records_dir))
    argv = [f"--flagfile={flagfile}", f"--work_dir={tmp_path / 'oracle'}", "--seeds=0",
            "--layouts=objects", "--unseen_seed=4321", f"--output={tmp_path / 'o.json'}", "--",
            "--pretrain_epochs=1", "--batch_size=6", "--spatial_grid=2"]
    table = scenes_oracle.main(argv)
    assert {"test", "unseen"} <= set(table["oracle_objects"]["pretrain"])
    saved = json.loads((tmp_path / "oracle" / "objects_seed0" / "quality.json").read_text())
    assert 0 <= saved["pretrain"]["unseen"]["acc_all"] <= 1
    assert saved["mentions"]["test"]["captions"] == 6
    assert sum(k["clips"] for k in saved["events"]["unseen"]["action kinds"].values()) == 6
    predictions = json.loads(
        (tmp_path / "oracle" / "objects_seed0" / "predictions_test.json").read_text())
    assert len(predictions) == 6
    shards = records.list_shards(str(tmp_path / "oracle" / "features_objects"), "train")
    assert [os.path.basename(s) for s in shards] == [
        os.path.basename(s) for s in records.list_shards(records_dir, "train")]
    from etenet_tf.training import stages
    monkeypatch.setattr(stages, "fit_stage", lambda *a, **k: pytest.fail("trained again"))
    assert scenes_oracle.main(argv) == table
    events = saved.pop("events")
    (tmp_path / "oracle" / "objects_seed0" / "quality.json").write_text(json.dumps(saved))
    assert scenes_oracle.main(argv) == table
    again = json.loads((tmp_path / "oracle" / "objects_seed0" / "quality.json").read_text())
    assert again["events"] == events and again["seconds"] == saved["seconds"]
