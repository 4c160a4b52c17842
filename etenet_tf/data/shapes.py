"""The embedded `shapes` dataset: synthetic clips generated on the spot.

Each clip shows one coloured shape moving in a straight line on a noisy
background. Its captions name the colour, the shape AND the direction of
motion, so a model must look at what is in a frame and at how it changes
over time. Generation is deterministic for a given seed: the same command
writes byte-identical videos on every machine with the same FFmpeg.

Layout written under `output_dir` (the clips go to `video_dir` instead
when one is given):
    videos/<split>_<nnnn>.mp4   MPEG-4 Part 2 clips (FFmpeg's own encoder)
    annotations.jsonl           {"video", "caption": [...], "split",
                                "attributes"} rows, read back with
                                `datasets.load_custom`
"""

import itertools
import json
import os
import re

import av
import numpy as np

from etenet_tf import files

_CLIP_NAME = re.compile(r"(train|val|test)_\d{4}\.mp4")

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
_DIRECTION_PHRASES = {
    "left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards",
}
# How captions may name each direction (for attribute accuracy).
DIRECTION_PARAPHRASES = {
    "left": ["left", "to the left", "leftwards"],
    "right": ["right", "to the right", "rightwards"],
    "up": ["up", "upwards", "upward"],
    "down": ["down", "downwards", "downward"],
}
_TEMPLATES = (
    "a {colour} {shape} moves {direction}",
    "a {colour} {shape} is moving {phrase}",
    "the {colour} {shape} slides {direction}",
    "a {colour} {shape} travels {direction} across the screen",
    "a {shape} that is {colour} moves {phrase}",
)


def captions_for(colour, shape, direction):
    """The paraphrased reference captions of one clip."""
    phrase = _DIRECTION_PHRASES[direction]
    return [
        t.format(colour=colour, shape=shape, direction=direction, phrase=phrase)
        for t in _TEMPLATES
    ]


def attributes_for(colour, shape, direction):
    """What is in a clip, for attribute accuracy (`etenet_tf.data.attributes`)."""
    return {"colour": colour, "shape": shape, "direction": DIRECTION_PARAPHRASES[direction]}


def render_clip(colour, shape, direction, rng, num_frames=24, size=96):
    """Renders one clip as uint8 `[num_frames, size, size, 3]`.

    Args:
        colour: a key of `COLOURS`.
        shape: one of `SHAPES`.
        direction: a key of `DIRECTIONS`.
        rng: `numpy.random.Generator` for position, size and noise.
        num_frames: frames in the clip.
        size: side of the square frames.
    """
    radius = rng.uniform(0.12, 0.18) * size
    travel = rng.uniform(0.35, 0.5) * size
    dx, dy = DIRECTIONS[direction]
    margin = radius + 2
    # start so that the whole path stays inside the frame
    lo_x = margin + (travel if dx < 0 else 0)
    hi_x = size - margin - (travel if dx > 0 else 0)
    lo_y = margin + (travel if dy < 0 else 0)
    hi_y = size - margin - (travel if dy > 0 else 0)
    x0, y0 = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    background = rng.integers(20, 70, size=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        f = t / max(num_frames - 1, 1)
        cx, cy = x0 + dx * travel * f, y0 + dy * travel * f
        mask = _shape_mask(shape, xx - cx, yy - cy, radius)
        noise = rng.integers(-12, 13, size=(size, size, 1))
        img = np.clip(background[None, None, :] + noise, 0, 255)
        img = np.where(mask[..., None], np.array(COLOURS[colour]), img)
        frames[t] = img.astype(np.uint8)
    return frames


def _shape_mask(shape, x, y, r):
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        side = r * 0.9
        return (np.abs(x) <= side) & (np.abs(y) <= side)
    # upward-pointing triangle inside the circle of radius r
    return (y <= r * 0.8) & (y >= -r) & (np.abs(x) <= (y + r) * 0.6)


def write_clip(path, frames, fps=12):
    """Writes frames to an MPEG-4 file, atomically (temp file + rename)."""
    with files.atomic_path(path, tmp=f"{path}.tmp-{os.getpid()}.mp4") as tmp:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"qscale": "3"}
            for img in frames:
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())


def generate(output_dir, videos_per_combination=(5, 1, 1), num_frames=24, size=96, seed=1234,
             video_dir=None):
    """Generates the dataset (skipping clips that already exist).

    Every (colour, shape, direction) combination appears in every split;
    4 colours x 3 shapes x 4 directions = 48 combinations. Each clip has its
    own random stream (seed, split, repetition, combination), so clips of
    another `seed` share no position, size or noise with these.
    `generation.json` records the settings; clips made with other settings
    are deleted and made again.

    Args:
        output_dir: where `annotations.jsonl` (and by default `videos/`) go.
        videos_per_combination: clips per combination for (train, val, test).
        num_frames: frames per clip.
        size: side of the frames.
        seed: generation seed.
        video_dir: where the clips go (default `<output_dir>/videos`).

    Returns:
        Path of `annotations.jsonl`.
    """
    video_dir = video_dir or os.path.join(output_dir, "videos")
    os.makedirs(video_dir, exist_ok=True)
    os.makedirs(output_dir, exist_ok=True)
    settings = {"videos_per_combination": list(videos_per_combination),
                "num_frames": num_frames, "size": size, "seed": seed}
    settings_path = os.path.join(output_dir, "generation.json")
    if os.path.isfile(settings_path):
        with open(settings_path, encoding="utf-8") as f:
            if json.load(f) != settings:
                # clips of other settings are made again (only the clips this
                # module names: a user's --video_dir may hold other files)
                for name in os.listdir(video_dir):
                    if _CLIP_NAME.fullmatch(name):
                        os.remove(os.path.join(video_dir, name))
    files.write_json(settings_path, settings)
    combos = list(itertools.product(COLOURS, SHAPES, DIRECTIONS))
    rows = []
    splits = zip(("train", "val", "test"), videos_per_combination)
    for split_no, (split, per_combo) in enumerate(splits):
        n = 0
        for rep in range(per_combo):
            for combo_no, (colour, shape, direction) in enumerate(combos):
                name = f"{split}_{n:04d}.mp4"
                n += 1
                rng = np.random.default_rng([seed, split_no, rep, combo_no])
                path = os.path.join(video_dir, name)
                if not os.path.exists(path):
                    write_clip(path, render_clip(colour, shape, direction, rng, num_frames, size))
                rows.append({
                    "video": name,
                    "caption": captions_for(colour, shape, direction),
                    "split": split,
                    "attributes": attributes_for(colour, shape, direction),
                })
    annotations = os.path.join(output_dir, "annotations.jsonl")
    files.write_text(annotations, "".join(json.dumps(row) + "\n" for row in rows))
    return annotations
