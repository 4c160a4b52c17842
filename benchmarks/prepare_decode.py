"""5. Prepare: videos/s decoded with frame sampling vs a full decode."""

import glob
import os
import time

import av
import numpy as np

from etenet_tf.data import video_decode

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".flv", ".gif", ".mkv", ".mov")


def full_decode(path, num_frames, image_size):
    """The straightforward way: every frame converted and kept, then sampled."""
    with av.open(path) as container:
        frames = [f.reformat(width=image_size, height=image_size, format="rgb24").to_ndarray()
                  for f in container.decode(video=0)]
    picks = video_decode.sample_indices(len(frames), num_frames)
    return np.stack([frames[i] for i in picks])


def clips(ctx):
    """The shared real clips if present, else the test clips and shapes clips."""
    shared = os.path.join(ctx.shared_dir, "videos")
    paths = [p for p in sorted(glob.glob(os.path.join(shared, "*")))
             if p.lower().endswith(VIDEO_EXTENSIONS)]
    if paths:
        return paths, shared
    here = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests", "data")
    paths = [p for p in sorted(glob.glob(os.path.join(here, "*")))
             if p.lower().endswith(VIDEO_EXTENSIONS)]
    return paths, here


def _decodes(path):
    try:
        video_decode.decode_video(path, 1, 8)
        return True
    except video_decode.VideoDecodeError:
        return False


def run(ctx):
    paths, source = clips(ctx)
    paths = [p for p in paths if _decodes(p)]
    num_frames, size = 16, ctx.caption_image_size
    timings = {}
    for name, fn in (("sampled", video_decode.decode_video), ("full", full_decode)):
        start = time.perf_counter()
        for path in paths:
            fn(path, num_frames, size)
        timings[name] = time.perf_counter() - start
    source_frames = 0
    for path in paths:
        with av.open(path) as container:
            source_frames += sum(1 for _ in container.decode(video=0))
    ratio = timings["full"] / timings["sampled"]
    return {
        "title": "prepare: decode with frame sampling vs full decode",
        "a": f"{len(paths) / timings['sampled']:.2f} videos/s sampled",
        "b": f"{len(paths) / timings['full']:.2f} videos/s full",
        "ratio": ratio, "target": "(no target: reported)", "met": None,
        "details": {
            "videos": len(paths), "source": source, "source_frames": source_frames,
            "frames_kept": num_frames, "image_size": size,
            "sampled_seconds": timings["sampled"], "full_seconds": timings["full"],
        },
    }
