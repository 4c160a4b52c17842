"""The `scenes` dataset: multi-object synthetic clips with headroom.

Each clip shows 2-3 objects (size x colour x shape) on a background that is
sometimes cluttered (a texture, strong noise, static grey distractor
shapes). One object (the subject) does something: moves in one of four
directions, moves towards / away from / past another object (the object),
grows or shrinks; it starts in a region of the frame (top left ... bottom
right). In about half of the clips a second event follows it (another
object moves or changes size), so captions must also get the order right:
"the small red circle in the top left moves towards the large blue square,
then the little green cross grows".

Every clip has 6 reference captions that vary word order and wording
(active / passive, "then" / "after that" / "before" / "after") and its
attributes for every slot, in the role form the attribute matcher parses
(`etenet_tf.evaluation.attributes`):
    subject  the first event's actor ("small red circle")
    action   what it does ("moves towards")
    object   the object it moves relative to, or "none"
    region   where it starts ("top left")
    order    what happens second ("large green cross grows"), or "none"

Generation is deterministic for a seed: each clip has its own random stream
(seed, split, index), so clips of another seed share nothing with these.
The layout is that of `etenet_tf.data.shapes`: `videos/<split>_<nnnn>.mp4`
and `annotations.jsonl` beside `generation.json`.
"""

import json
import os
import re

import numpy as np

from etenet_tf import files
from etenet_tf.data.shapes import write_clip

_CLIP_NAME = re.compile(r"(train|val|test)_\d{4,5}\.mp4")

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 20),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = {"small": 0.065, "large": 0.1}  # radius as a fraction of the frame side
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
REGIONS = {  # (x side, y side): -1 left / top, +1 right / bottom
    "top left": (-1, -1), "top right": (1, -1), "bottom left": (-1, 1), "bottom right": (1, 1),
}
REGION_WORDS = {
    "top left": ("top left", "upper left"), "top right": ("top right", "upper right"),
    "bottom left": ("bottom left", "lower left"), "bottom right": ("bottom right", "lower right"),
}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# the action values and the phrases captions use for them (the first is the value)
ACTIONS = {
    "moves left": ("moves left", "moves to the left", "slides left", "goes left",
                   "travels leftwards"),
    "moves right": ("moves right", "moves to the right", "slides right", "goes right",
                    "travels rightwards"),
    "moves up": ("moves up", "moves upwards", "slides up", "goes up", "travels upwards"),
    "moves down": ("moves down", "moves downwards", "slides down", "goes down",
                   "travels downwards"),
    "moves towards": ("moves towards", "approaches", "goes towards", "heads towards",
                      "moves toward"),
    "moves away from": ("moves away from", "goes away from", "retreats from",
                        "heads away from", "moves off from"),
    "moves past": ("moves past", "passes", "goes past", "slides past", "travels past"),
    "grows": ("grows", "gets bigger", "becomes larger", "expands", "grows in size"),
    "shrinks": ("shrinks", "gets smaller", "becomes smaller", "contracts", "shrinks in size"),
}
# passive phrases end with "by": the matcher swaps subject and object for them
PASSIVE = {"moves towards": "is approached by", "moves past": "is passed by"}
RELATIONS = ("moves towards", "moves away from", "moves past")
CHANGES = ("grows", "shrinks")
SECOND_ACTIONS = tuple(f"moves {d}" for d in DIRECTIONS) + CHANGES
NONE = "none"
FRAMES = 24  # frames `generate` renders per clip
SIZE = 96  # their side, pixels
_GROWTH = 1.7
_MARGIN = 0.08  # a subject starts this far (x frame side) from the centre lines


def action_phrases(action):
    """Every phrase naming `action`, the value first (passive included)."""
    return list(ACTIONS[action]) + ([PASSIVE[action]] if action in PASSIVE else [])


def noun(obj):
    """An object's value: "small red circle"."""
    return f"{obj['size']} {obj['colour']} {obj['shape']}"


def noun_phrases(obj):
    """Every phrase naming an object, its value first."""
    return [f"{word} {obj['colour']} {obj['shape']}" for word in SIZE_WORDS[obj["size"]]]


def shape_mask(shape, x, y, r):
    """Mask of a scenes shape of radius `r` centred at 0 (`x`, `y`: offsets)."""
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        side = r * 0.85
        return (np.abs(x) <= side) & (np.abs(y) <= side)
    if shape == "triangle":
        return (y <= r * 0.8) & (y >= -r) & (np.abs(x) <= (y + r) * 0.6)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= r
    # cross: two bars inside the square of side 2r
    bar = r * 0.35
    inside = (np.abs(x) <= r) & (np.abs(y) <= r)
    return inside & ((np.abs(x) <= bar) | (np.abs(y) <= bar))


def _unit(v):
    n = float(np.hypot(*v))
    return (v[0] / n, v[1] / n) if n > 1e-6 else (1.0, 0.0)


def _plan_event(rng, actor, action, other, size):
    """The actor's end state `(x, y, radius)` for an action, or None when the
    path would leave the frame."""
    x, y, r = actor["x"], actor["y"], actor["r"]
    travel = rng.uniform(0.28, 0.38) * size
    if action.startswith("moves ") and action not in RELATIONS:
        dx, dy = DIRECTIONS[action.split()[1]]
        end = (x + dx * travel, y + dy * travel, r)
    elif action in CHANGES:
        end = (x, y, r * _GROWTH if action == "grows" else r / _GROWTH)
    else:
        ux, uy = _unit((other["x"] - x, other["y"] - y))
        distance = float(np.hypot(other["x"] - x, other["y"] - y))
        if action == "moves towards":
            step = distance - (r + other["r"] + 3)
            if step < 0.22 * size:
                return None
            end = (x + ux * step, y + uy * step, r)
        elif action == "moves away from":
            end = (x - ux * travel, y - uy * travel, r)
        else:
            raise ValueError(f"{action!r} is planned by sample_scene")
    ex, ey, er = end
    if not (er <= ex <= size - er and er <= ey <= size - er):
        return None
    return end


def sample_scene(rng, size, action, second=None, max_objects=3):
    """A layout of the objects for the clip's events (positions in pixels),
    or None to draw again.

    Args:
        rng: the clip's `numpy.random.Generator`.
        size: side of the frames.
        action: the first event's action (a key of `ACTIONS`).
        second: the second event's action (one of `SECOND_ACTIONS`) or None.
        max_objects: 2 or 3.

    Returns:
        `{"objects": [...], "events": [(actor_index, action, other_index or
        None, start, end), ...]}` where start/end are `(x, y, radius)`.
    """
    count = int(rng.integers(2, max_objects + 1))
    kinds = rng.permutation([(c, s) for c in COLOURS for s in SHAPES])[:count]
    objects = []
    for colour, shape in kinds:
        size_name = ("small", "large")[int(rng.integers(2))]
        r = SIZES[size_name] * size
        objects.append({"colour": str(colour), "shape": str(shape), "size": size_name, "r": r,
                        "x": float(rng.uniform(r, size - r)),
                        "y": float(rng.uniform(r, size - r))})
    for i, a in enumerate(objects):  # no overlap at the start
        for b in objects[:i]:
            if np.hypot(a["x"] - b["x"], a["y"] - b["y"]) < a["r"] + b["r"] + 4:
                return None
    other = 1 if action in RELATIONS else None
    if action == "moves past":  # start beside the other object's path, at an offset
        a, b = objects[0], objects[1]
        angle = rng.uniform(0, 2 * np.pi)
        ux, uy = np.cos(angle), np.sin(angle)
        offset = (a["r"] + b["r"] + 3) * (1 if rng.integers(2) else -1)
        reach = rng.uniform(0.16, 0.2) * size
        a["x"], a["y"] = b["x"] - ux * reach - uy * offset, b["y"] - uy * reach + ux * offset
        end = (b["x"] + ux * reach - uy * offset, b["y"] + uy * reach + ux * offset, a["r"])
        if not (a["r"] <= end[0] <= size - a["r"] and a["r"] <= end[1] <= size - a["r"]):
            return None
        for c in objects[2:]:
            if np.hypot(a["x"] - c["x"], a["y"] - c["y"]) < a["r"] + c["r"] + 4:
                return None
    else:
        end = _plan_event(rng, objects[0], action, objects[1], size)
    if end is None or not _in_frame(objects[0], size):
        return None
    half = size / 2
    if min(abs(objects[0]["x"] - half), abs(objects[0]["y"] - half)) < _MARGIN * size:
        return None  # the region must be clear
    events = [(0, action, other, (objects[0]["x"], objects[0]["y"], objects[0]["r"]), end)]
    if second is not None:
        actor = int(rng.integers(1, count))
        state = dict(objects[actor])
        start = (state["x"], state["y"], state["r"])
        end2 = _plan_event(rng, state, second, None, size)
        if end2 is None:
            return None
        events.append((actor, second, None, start, end2))
    return {"objects": objects, "events": events}


def _in_frame(obj, size):
    return obj["r"] <= obj["x"] <= size - obj["r"] and obj["r"] <= obj["y"] <= size - obj["r"]


def region_of(x, y, size):
    """The region name of a point."""
    side = (1 if x >= size / 2 else -1, 1 if y >= size / 2 else -1)
    return next(name for name, s in REGIONS.items() if s == side)


def cell_of(x, y, size, grid):
    """`(row, column)` of the `grid x grid` cell of a `size`-pixel frame
    that holds the point (x, y)."""
    return min(int(y * grid / size), grid - 1), min(int(x * grid / size), grid - 1)


def truth_of(scene, size):
    """The slot values of a scene: {subject, action, object, region, order}."""
    objects, events = scene["objects"], scene["events"]
    actor, action, other, start, _ = events[0]
    truth = {"subject": noun(objects[actor]), "action": action,
             "object": noun(objects[other]) if other is not None else NONE,
             "region": region_of(start[0], start[1], size), "order": NONE}
    if len(events) > 1:
        truth["order"] = f"{noun(objects[events[1][0]])} {events[1][1]}"
    return truth


def attributes_for(scene, size):
    """The clip's attributes in the matcher's form: each slot's value first,
    then the other phrases that name it."""
    objects, events = scene["objects"], scene["events"]
    actor, action, other, start, _ = events[0]
    region = region_of(start[0], start[1], size)
    attributes = {
        "subject": noun_phrases(objects[actor]),
        "action": action_phrases(action),
        "object": noun_phrases(objects[other]) if other is not None else [NONE],
        "region": list(REGION_WORDS[region]),
        "order": [NONE],
    }
    if len(events) > 1:
        attributes["order"] = [f"{noun(objects[events[1][0]])} {events[1][1]}"]
    return attributes


def _clause(objects, event, k, region=None):
    """One event as words, in the k-th wording."""
    actor, action, other, _, _ = event
    subject = noun_phrases(objects[actor])[k % 2]
    verb = ACTIONS[action][k % len(ACTIONS[action])]
    target = f" the {noun_phrases(objects[other])[(k + 1) % 2]}" if other is not None else ""
    where = f"in the {REGION_WORDS[region][(k // 2) % 2]}" if region else ""
    if region and action in PASSIVE and k % 3 == 2:
        return (f"the {noun_phrases(objects[other])[k % 2]} {PASSIVE[action]} the {subject} "
                f"from the {REGION_WORDS[region][k % 2]}")
    place = k % 3
    if not region:
        return f"the {subject} {verb}{target}"
    if place == 0:
        return f"the {subject} {where} {verb}{target}"
    if place == 1:
        return f"{where} the {subject} {verb}{target}"
    return f"the {subject} {verb}{target} {where}"


_ORDERS = (
    "{a}, then {b}",
    "{a}. after that, {b}",
    "{a} before {b}",
    "{b} after {a}",
    "first {a}, and then {b}",
    "{a}, and after that {b}",
)


def captions_for(scene, size, count=6):
    """`count` reference captions of a scene, each worded differently."""
    objects, events = scene["objects"], scene["events"]
    region = region_of(events[0][3][0], events[0][3][1], size)
    captions = []
    for k in range(count):
        first = _clause(objects, events[0], k, region)
        if len(events) == 1:
            captions.append(first)
            continue
        second = _clause(objects, events[1], k + 1)
        captions.append(_ORDERS[k % len(_ORDERS)].format(a=first, b=second))
    return captions


def _background(rng, size, clutter):
    base = rng.integers(20, 70, size=3).astype(np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    kinds = []
    if rng.random() < clutter:
        kinds = list(rng.choice(["texture", "noise", "distractors"],
                                size=int(rng.integers(1, 3)), replace=False))
    if "texture" in kinds:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        period = rng.uniform(5, 12)
        angle = rng.uniform(0, np.pi)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        if rng.random() < 0.5:  # checks instead of stripes
            wave = wave * np.sin((-xx * np.sin(angle) + yy * np.cos(angle)) * 2 * np.pi / period)
        img += (wave * rng.uniform(10, 22))[..., None]
    if "distractors" in kinds:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        for _ in range(int(rng.integers(1, 4))):
            r = rng.uniform(0.04, 0.07) * size
            cx, cy = rng.uniform(r, size - r, size=2)
            grey = rng.uniform(85, 135)
            mask = shape_mask(SHAPES[int(rng.integers(len(SHAPES)))], xx - cx, yy - cy, r)
            img[mask] = grey
    noise = 30 if "noise" in kinds else 10
    return img, noise, sorted(str(k) for k in kinds)


def object_states(scene, num_frames=FRAMES):
    """Where every object is in each frame `render_clip` draws: a list (one
    per frame) of `(x, y, radius)` per object.

    With two events the first runs over the first half of the clip and the
    second over the second half; a single event runs over the whole clip.
    """
    objects, events = scene["objects"], scene["events"]
    windows = [(0.0, 1.0)] if len(events) == 1 else [(0.0, 0.5), (0.5, 1.0)]
    frames = []
    for t in range(num_frames):
        time = t / max(num_frames - 1, 1)
        states = [(o["x"], o["y"], o["r"]) for o in objects]
        for (actor, _, _, start, end), (lo, hi) in zip(events, windows):
            if time >= lo:
                f = min((time - lo) / (hi - lo), 1.0)
                states[actor] = tuple(a + (b - a) * f for a, b in zip(start, end))
        frames.append(states)
    return frames


def render_clip(scene, rng, num_frames=FRAMES, size=SIZE, clutter=0.5):
    """Renders a scene as uint8 `[num_frames, size, size, 3]` (the objects
    where `object_states` puts them)."""
    objects, events = scene["objects"], scene["events"]
    background, noise, _ = _background(rng, size, clutter)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    movers = {e[0] for e in events}
    order = [i for i in range(len(objects)) if i not in movers] + sorted(movers)
    for t, states in enumerate(object_states(scene, num_frames)):
        img = background + rng.integers(-noise, noise + 1, size=(size, size, 1))
        for i in order:
            x, y, r = states[i]
            mask = shape_mask(objects[i]["shape"], xx - x, yy - y, r)
            img[mask] = COLOURS[objects[i]["colour"]]
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def make_scene(seed, split_no, index, size, max_objects=3):
    """The scene of one clip and its random stream (for rendering)."""
    rng = np.random.default_rng([seed, split_no, index])
    # what happens is drawn first (uniformly), then a layout where it fits
    action = tuple(ACTIONS)[int(rng.integers(len(ACTIONS)))]
    second = SECOND_ACTIONS[int(rng.integers(len(SECOND_ACTIONS)))] if rng.random() < 0.5 \
        else None
    for _ in range(1000):
        scene = sample_scene(rng, size, action, second, max_objects)
        if scene is not None:
            return scene, rng
    raise RuntimeError("no scene found in 1000 draws")  # (never seen: most draws succeed)


SPLITS = ("train", "val", "test")


def scene_of_clip(name, seed, size, max_objects=3):
    """The scene of the clip file `name` (`<split>_<nnnn>.mp4`, as `generate`
    names them) of generation `seed` and frame side `size`; ValueError for
    a name `generate` does not write."""
    if not _CLIP_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a scenes clip name (split_nnnn.mp4)")
    split, index = name[:-len(".mp4")].split("_")
    return make_scene(seed, SPLITS.index(split), int(index), size, max_objects)[0]


def generate(output_dir, videos=(400, 100, 100), num_frames=FRAMES, size=SIZE, seed=4321,
             clutter=0.5, max_objects=3, video_dir=None):
    """Generates the dataset (skipping clips that already exist).

    Args:
        output_dir: where `annotations.jsonl` (and by default `videos/`) go.
        videos: clips of (train, val, test).
        num_frames: frames per clip.
        size: side of the frames.
        seed: generation seed.
        clutter: fraction of clips with a cluttered background.
        max_objects: 2 or 3 objects at most per clip.
        video_dir: where the clips go (default `<output_dir>/videos`).

    Returns:
        Path of `annotations.jsonl`.
    """
    video_dir = video_dir or os.path.join(output_dir, "videos")
    os.makedirs(video_dir, exist_ok=True)
    os.makedirs(output_dir, exist_ok=True)
    settings = {"dataset": "scenes", "videos": list(videos), "num_frames": num_frames,
                "size": size, "seed": seed, "clutter": clutter, "max_objects": max_objects}
    settings_path = os.path.join(output_dir, "generation.json")
    if os.path.isfile(settings_path):
        with open(settings_path, encoding="utf-8") as f:
            if json.load(f) != settings:
                for name in os.listdir(video_dir):
                    if _CLIP_NAME.fullmatch(name):
                        os.remove(os.path.join(video_dir, name))
    files.write_json(settings_path, settings)
    rows = []
    for split_no, (split, count) in enumerate(zip(SPLITS, videos)):
        for index in range(count):
            name = f"{split}_{index:04d}.mp4"
            scene, rng = make_scene(seed, split_no, index, size, max_objects)
            path = os.path.join(video_dir, name)
            if not os.path.exists(path):
                write_clip(path, render_clip(scene, rng, num_frames, size, clutter))
            rows.append({"video": name, "caption": captions_for(scene, size), "split": split,
                         "attributes": attributes_for(scene, size)})
    annotations = os.path.join(output_dir, "annotations.jsonl")
    files.write_text(annotations, "".join(json.dumps(row) + "\n" for row in rows))
    return annotations
