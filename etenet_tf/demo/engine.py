"""The demo without the web page: check an upload, caption it with the
chosen decoding, show where each word looked, say what the model is.

`DemoEngine` holds one model; `caption(path, Decoding(...))` returns a
`DemoResult` (the n-best captions with scores, the sampled frames and the
attention of every word of the best caption), or raises `UploadError`
with a message for the page. Memory stays bounded: an upload is refused
before decoding when it is too large, too long or has too many pixels
per frame, decoding keeps at most `2 x frames` small frames
(`data.video_decode`), and at most `MAX_COMPILED` decoding functions are
kept compiled.

Decoding choices (`Decoding.method`): `beam` (beam search, `num_captions`
best beams), `sample` (`num_captions` captions drawn at `temperature`
from `seed`), `top_k` (drawn from the `top_k` likeliest words at each
step) and `top_p` (nucleus sampling: drawn from the fewest likeliest
words holding `top_p` of the probability). A new sampling rule is one
`Method` in `METHODS` (its line for the page, the `Decoding` fields it
reads, its drawing rule of `DRAWN_RULES`) and its fields in `Decoding`;
the page offers whatever `METHODS` lists.
"""

import collections
import dataclasses
import os
import threading

import av
import numpy as np
from PIL import Image

from etenet_tf import limits
from etenet_tf.data import video_decode
from etenet_tf.export import package
from etenet_tf.generation.config import DecodingConfig
from etenet_tf.generation.samplers import drawn_sampler


@dataclasses.dataclass(frozen=True)
class Method:
    """A decoding rule the page offers.

    Args:
        summary: one line for the page.
        reads: the `Decoding` fields it reads besides `num_captions`,
            `max_length` (and `seed`, which every drawn rule reads).
        rule: its drawing rule (a key of `generation.DRAWN_RULES`), or
            None for beam search.
    """

    summary: str
    reads: frozenset
    rule: str | None = None

    @property
    def draws(self):
        """Whether it draws at random (temperature and seed apply)."""
        return self.rule is not None


METHODS = {
    "beam": Method("beam search: the most likely captions",
                   frozenset({"beam_size", "length_penalty"})),
    "sample": Method("random sampling at a temperature: varied captions",
                     frozenset({"temperature"}), "random"),
    "top_k": Method("top-k sampling: drawn from the k likeliest words",
                    frozenset({"temperature", "top_k"}), "top_k"),
    "top_p": Method("top-p (nucleus) sampling: drawn from the likeliest words holding p of "
                    "the probability", frozenset({"temperature", "top_p"}), "top_p"),
}
MAX_TOP_K = 1000  # most words a top-k draw may keep
MAX_COMPILED = 8  # compiled decoding functions kept (one per choice of rule and sizes)
MAX_CAPTIONS = 10  # most beams / samples one request may ask for


class UploadError(Exception):
    """An upload or a choice the demo cannot caption; the message is for the page."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What an upload may be."""

    max_upload_mb: float = 50.0
    max_frame_pixels: int = limits.MAX_FRAME_PIXELS
    max_video_seconds: float = 600.0


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How one request is decoded.

    Args:
        method: a key of `METHODS`.
        beam_size: beams (`beam`).
        num_captions: captions returned, best first.
        temperature: logits are divided by it (`sample`, `top_k`, `top_p`).
        seed: the draws' seed (the same seed, the same captions).
        length_penalty: GNMT alpha of the beam choice.
        max_length: most tokens per caption.
        top_k: words kept per step (`top_k`).
        top_p: probability mass kept per step (`top_p`).
    """

    method: str = "beam"
    beam_size: int = 5
    num_captions: int = 3
    temperature: float = 1.0
    seed: int = 0
    length_penalty: float = 0.6
    max_length: int = 20
    top_k: int = 10
    top_p: float = 0.9

    def checked(self):
        """Itself with whole numbers, or `UploadError` for a choice out of range."""
        if self.method not in METHODS:
            raise UploadError(f"unknown decoding '{self.method}'; choose {', '.join(METHODS)}")
        try:
            beam, count, seed = int(self.beam_size), int(self.num_captions), int(self.seed)
            temperature, top_k, top_p = float(self.temperature), int(self.top_k), float(
                self.top_p)
        except (TypeError, ValueError):
            raise UploadError("beam size, number of captions, seed, top-k and top-p must be "
                              "numbers") from None
        if not 1 <= count <= MAX_CAPTIONS or not 1 <= beam <= MAX_CAPTIONS:
            raise UploadError(f"beam size and number of captions must be 1 to {MAX_CAPTIONS}")
        if self.method == "beam" and count > beam:
            raise UploadError(f"{count} captions need a beam size of at least {count} (each "
                              "caption is a beam)")
        if METHODS[self.method].draws and not 0.05 <= temperature <= 5:
            raise UploadError("the temperature must be between 0.05 and 5")
        if self.method == "top_k" and not 1 <= top_k <= MAX_TOP_K:
            raise UploadError(f"top-k must be 1 to {MAX_TOP_K} words")
        if self.method == "top_p" and not 0 < top_p <= 1:
            raise UploadError("top-p must be above 0 and at most 1")
        return dataclasses.replace(self, beam_size=beam, num_captions=count, seed=seed,
                                   temperature=temperature, top_k=top_k, top_p=top_p)

    def compile_key(self):
        """What a compiled decoding function depends on: these settings
        without the seed (an argument of the function) and with the fields
        the method ignores at their defaults, so e.g. a new temperature
        under beam search reuses the beam function."""
        ignored = _OWN_FIELDS - METHODS[self.method].reads
        return dataclasses.replace(self, seed=0, **{name: getattr(_DEFAULT, name)
                                                    for name in ignored})


# the fields only some methods read (all read num_captions and max_length)
_OWN_FIELDS = frozenset().union(*(method.reads for method in METHODS.values()))
_DEFAULT = Decoding()


def make_sampler(decoding):
    """The sampler of a `Decoding`, and its call arguments (besides the
    seed, which varies per request without recompiling)."""
    if decoding.method not in METHODS:
        raise UploadError(f"unknown decoding '{decoding.method}'")
    method = METHODS[decoding.method]
    if method.draws:
        return drawn_sampler(method.rule, decoding.num_captions, decoding.temperature,
                             decoding.top_k, decoding.top_p), True
    return DecodingConfig(beam_size=decoding.beam_size,
                          length_penalty=decoding.length_penalty,
                          max_decode_length=decoding.max_length,
                          num_captions=decoding.num_captions).sampler(), False


DemoResult = collections.namedtuple("DemoResult", ["captions", "frames", "words", "attention"])
DemoResult.__doc__ = """One captioned upload.

Fields:
    captions: `[(caption, score), ...]`, best first.
    frames: uint8 `[T, S, S, 3]`, the frames the model saw.
    words: the best caption's words (and `<end>` when it ended).
    attention: float32 `[len(words), T, cells]`: each word's attention
        over the frames' grid cells (rows sum to 1).
"""


def probe(path, demo_limits):
    """Checks an upload before it is decoded; raises `UploadError`.

    Size on disk, a video stream, its frame size and its duration (the
    container's, the stream's, or else the last packet's time, found by
    reading packets without decoding them).
    """
    if not path:
        raise UploadError("choose a video first (upload one or pick an example)")
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
    except OSError:
        raise UploadError(f"{name}: the upload did not arrive; try again") from None
    if size > demo_limits.max_upload_mb * 1e6:
        raise UploadError(f"{name} is {size / 1e6:.1f} MB; the limit is "
                          f"{demo_limits.max_upload_mb:g} MB (--max_upload_mb)")
    try:
        container = av.open(path, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        raise UploadError(f"{name} is not a video file (FFmpeg cannot read it)") from None
    with container:
        if not container.streams.video:
            raise UploadError(f"{name} has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > demo_limits.max_frame_pixels:
            raise UploadError(f"{name}: frames of {width}x{height} exceed the limit of "
                              f"{demo_limits.max_frame_pixels} pixels (--max_frame_pixels)")
        seconds = _duration(container, stream, demo_limits.max_video_seconds)
        if seconds > demo_limits.max_video_seconds:
            raise UploadError(f"{name} lasts {seconds:.0f} s; the limit is "
                              f"{demo_limits.max_video_seconds:g} s (--max_video_seconds)")


def _duration(container, stream, limit):
    if container.duration:
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    last = 0.0
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base:
                last = max(last, float(packet.pts * packet.time_base))
                if last > limit:
                    break
    except (av.FFmpegError, ValueError):
        pass
    return last


def word_attention(attention, words, num_frames):
    """Each word's attention as `[words, T, cells]` (frame-major memory
    tokens, `cells` grid cells per frame)."""
    attention = np.asarray(attention, np.float32)[: len(words)]
    cells = attention.shape[-1] // num_frames
    return attention[:, : num_frames * cells].reshape(len(words), num_frames, cells)


class DemoEngine:
    """One model, captioning one upload at a time.

    Args:
        model_dir: a model directory or package (`export.package`).
        stage: the training stage whose best weights to load.
        records_dir: the training records (what the model is; optional).
        demo_limits: `Limits` of an upload.
        defaults: the `Decoding` the page starts with.
    """

    def __init__(self, model_dir, stage, *, records_dir="", demo_limits=Limits(),
                 defaults=Decoding()):
        from etenet_tf.run_dir import RunDir
        self.model_dir = model_dir
        self.stage = stage
        self.records_dir = records_dir
        self.limits = demo_limits
        self.defaults = defaults
        run_dir = RunDir(model_dir)
        self.spec = run_dir.read_input_spec()
        self.model = run_dir.load_trained_model(stage)
        self._compiled = collections.OrderedDict()
        self._lock = threading.Lock()

    def _function(self, decoding):
        import tensorflow as tf

        from etenet_tf.generation.captioning import generate
        key = decoding.compile_key()
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        sampler, seeded = make_sampler(decoding)
        model = self.model

        def run(frames, seed):
            args = {"seed": seed} if seeded else {}
            features = model.encode(frames)
            ids, scores, attention = generate(model, features, sampler,
                                              max_length=decoding.max_length, **args)
            shape = tf.shape(ids)
            texts = tf.reshape(model.detokenize(tf.reshape(ids, [-1, shape[2]])), shape[:2])
            return texts, scores, attention, ids

        function = tf.function(run, reduce_retracing=True)
        self._compiled[key] = function
        while len(self._compiled) > MAX_COMPILED:
            self._compiled.popitem(last=False)
        return function

    def decode(self, path):
        """The frames the model takes of an upload (checked first)."""
        probe(path, self.limits)
        try:
            return video_decode.decode_video(path, self.spec["num_frames"],
                                             self.spec["image_size"],
                                             self.limits.max_frame_pixels)
        except video_decode.VideoDecodeError as e:
            raise UploadError(str(e).replace(path, os.path.basename(path))) from None

    def caption(self, path, decoding=None):
        """Captions one video; returns a `DemoResult`.

        Raises:
            UploadError: the upload or the decoding choice cannot be used.
        """
        decoding = (decoding or self.defaults).checked()
        frames = self.decode(path)
        with self._lock:
            function = self._function(decoding)
            texts, scores, attention, _ = function(frames[None], np.array(
                [decoding.seed, 0], np.int32))
        texts = [t.decode("utf-8") for t in texts.numpy()[0]]
        scores = scores.numpy()[0].astype(float)
        order = np.argsort(-scores, kind="stable")  # samples come in draw order
        best = int(order[0])
        words = texts[best].split()
        if len(words) < decoding.max_length:
            words.append("<end>")
        return DemoResult(
            captions=[(texts[i], float(scores[i])) for i in order], frames=frames,
            words=words,
            attention=word_attention(attention.numpy()[0, best], words, frames.shape[0]))

    def warm_up(self):
        """Compiles the default decoding on a blank clip (the first visitor
        then does not wait for the trace)."""
        frames = np.zeros((1, self.spec["num_frames"], self.spec["image_size"],
                           self.spec["image_size"], 3), np.uint8)
        decoding = self.defaults.checked()
        with self._lock:
            self._function(decoding)(frames, np.zeros([2], np.int32))

    def describe(self):
        """What the model is, in Markdown: source, stage, training data,
        input, vocabulary, scores."""
        from etenet_tf.run_dir import RunDir
        run_dir = RunDir(self.model_dir)
        data = package.training_data(run_dir, self.records_dir) or {}
        scores = package.collect_scores(run_dir, self.stage)
        config = run_dir.read_model_config().to_dict()
        splits = ", ".join(f"{s}: {v.get('videos')} videos" for s, v in
                           sorted((data.get("splits") or {}).items())) or "not recorded"
        best = run_dir.read_best(self.stage) or {}
        lines = [
            f"- **Model**: `{self.model_dir}`, best `{self.stage}` checkpoint "
            f"(validation {best.get('metric', '?')} = {_number(best.get('value'))}, epoch "
            f"{best.get('epoch', '?')})",
            f"- **Training data**: {data.get('dataset', 'unknown')} ({splits})",
            f"- **Input**: {self.spec['num_frames']} frames of {self.spec['image_size']}x"
            f"{self.spec['image_size']} px, sampled uniformly over the video",
            f"- **Network**: {config.get('encoder')} encoder"
            f"{' cut at ' + config['feature_layer'] if config.get('feature_layer') else ''}, "
            f"{config.get('spatial_grid')}x{config.get('spatial_grid')} grid, temporal "
            f"{config.get('temporal')}, {package.describe_decoder(config)}; vocabulary "
            f"{len(run_dir.read_vocabulary())} words",
            "",
            "**Test scores**:",
            "",
            package.scores_table(scores, "none yet: `--stage=evaluate` writes them to "
                                         "`<model_dir>/evaluation/`"),
        ]
        return "\n".join(lines)


def _number(value):
    return f"{value:.4f}" if isinstance(value, (int, float)) else "?"


def heat_map_image(frames, weights, size=160, columns=8):
    """The frames with one word's attention over them: each frame lit where
    the word looked (its grid cells, smoothed to the frame) and captioned
    with the share of the word's attention it got.

    Args:
        frames: uint8 `[T, H, W, 3]`.
        weights: `[T, cells]` the word's attention (sums to 1).
        size: side of each frame in the picture.
        columns: frames per row.

    Returns:
        uint8 RGB `[rows * (size + 18), columns' * size, 3]`.
    """
    from PIL import ImageDraw
    frames = np.asarray(frames)
    weights = np.asarray(weights, np.float32)
    t, cells = weights.shape
    grid = int(round(cells ** 0.5))
    per_frame = weights.sum(-1)
    top = max(float(weights.max()), 1e-9)
    columns = min(columns, t)
    rows = -(-t // columns)
    label = 18
    canvas = Image.new("RGB", (columns * size, rows * (size + label)), (16, 16, 16))
    draw = ImageDraw.Draw(canvas)
    for i in range(t):
        frame = np.asarray(Image.fromarray(frames[i]).resize((size, size), Image.BILINEAR),
                           np.float32)
        if grid * grid == cells:
            cell = weights[i].reshape(grid, grid) / top
        else:
            cell = np.full((1, 1), per_frame[i] / max(float(per_frame.max()), 1e-9))
        light = np.asarray(Image.fromarray((cell * 255).astype(np.uint8)).resize(
            (size, size), Image.BILINEAR), np.float32)[..., None] / 255.0
        heat = np.concatenate([np.ones_like(light), light, np.zeros_like(light)], -1) * 255
        lit = frame * (0.25 + 0.75 * light) * 0.6 + heat * light * 0.4
        x, y = (i % columns) * size, (i // columns) * (size + label)
        canvas.paste(Image.fromarray(lit.clip(0, 255).astype(np.uint8)), (x, y))
        draw.text((x + 4, y + size + 3), f"frame {i + 1}: {100 * per_frame[i]:.0f}%",
                  fill=(230, 230, 230))
    return np.asarray(canvas)


def example_videos(directory, cache_dir, count=4):
    """Example videos for the page: the video files of `directory`, or
    (`directory` empty) `count` clips drawn by the shapes generator into
    `cache_dir` as H.264, which browsers play (kept: a restart reuses them)."""
    from etenet_tf.data import inputs
    if directory:
        found, _ = inputs.expand_video_inputs([directory])
        return sorted(found)[:16]
    from etenet_tf.data import shapes
    rng = np.random.default_rng(7)
    combos = [("red", "circle", "left"), ("blue", "square", "up"),
              ("green", "triangle", "right"), ("yellow", "circle", "down")]
    os.makedirs(cache_dir, exist_ok=True)
    paths = []
    for colour, shape, direction in combos[:count]:
        path = os.path.join(cache_dir, f"{colour}_{shape}_{direction}.mp4")
        frames = shapes.render_clip(colour, shape, direction, rng, num_frames=24, size=96)
        if not os.path.isfile(path):
            _write_playable_clip(path, frames)
        paths.append(path)
    return paths


def _write_playable_clip(path, frames, fps=12):
    """Writes frames as H.264 MP4 (what browsers play), atomically."""
    from etenet_tf import files
    with files.atomic_path(path, tmp=f"{path}.tmp-{os.getpid()}.mp4") as tmp:
        with av.open(tmp, mode="w") as container:
            try:
                stream = container.add_stream("libx264", rate=fps)
            except (av.FFmpegError, ValueError):  # a PyAV without x264: plays in fewer browsers
                stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            for image in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
