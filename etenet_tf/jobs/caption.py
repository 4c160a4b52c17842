"""`--stage=caption`: caption a user's own video files.

Prints `path<TAB>caption` per video on stdout. A file that cannot be
decoded gets `path<TAB>ERROR: reason` on stderr and the others still get
captions; `main.py` exits 1 if any failed.

`--runner=beam` captions on an Apache Beam pipeline instead
(`etenet_tf.beam.caption`: RunInference, JSON Lines shards of `--output`).
"""

import os
import sys

import numpy as np

from etenet_tf import files
from etenet_tf.data import video_decode
from etenet_tf.errors import UsageError
from etenet_tf.evaluation import attention_image
from etenet_tf.files import write_json
from etenet_tf.generation import CaptionGenerator
from etenet_tf.jobs.registry import checkpoint_stages
from etenet_tf.run_dir import RunDir


def _picture_path(directory, video_path, taken):
    """`<file name with extension>.png` in `directory`, numbered when two
    videos share a file name, so no picture overwrites another."""
    base = os.path.basename(video_path)
    name, n = f"{base}.png", 1
    while name in taken:
        n += 1
        name = f"{base}-{n}.png"
    taken.add(name)
    return os.path.join(directory, name)


def run(config):
    """Captions `--videos`.

    Returns:
        dict path -> error message of the videos that failed.
    """
    caption, decoding = config.caption, config.decoding
    caption.validate()
    decoding.validate()
    config.beam.validate()
    if config.beam.runner == "beam":
        return _run_on_beam(config)
    if config.beam.saved_model or caption.videos_from:
        raise UsageError("--saved_model and --videos_from are read by --runner=beam")
    if not caption.videos:
        raise UsageError("--stage=caption needs --videos=a.mp4,b.webm,...")
    # where the results go is checked before any video is captioned
    if caption.output:
        files.check_file_target(caption.output, "output")
    if caption.attention_dir:
        files.ensure_directory(caption.attention_dir, "attention_dir")
    run_dir = RunDir(config.model_dir)
    stage = checkpoint_stages(config.evaluation.checkpoint, run_dir)[-1]
    model = run_dir.load_trained_model(stage)
    num_frames = run_dir.read_input_spec()["num_frames"]
    generator = CaptionGenerator(model, decoding.sampler(), decoding.max_decode_length)
    results, failures, pictures = {}, {}, set()
    for path in caption.videos:
        try:
            frames = video_decode.decode_video(path, num_frames, model.image_size,
                                               max_pixels=config.data.max_frame_pixels)
        except video_decode.VideoDecodeError as e:
            failures[path] = str(e)
            results[path] = {"error": str(e)}
            print(f"{path}\tERROR: {e}", file=sys.stderr, flush=True)
            continue
        captions = generator(frames[None])
        text = captions.texts[0, 0].numpy().decode("utf-8")
        results[path] = {"caption": text, "score": float(captions.scores[0, 0])}
        print(f"{path}\t{text}", flush=True)
        if caption.attention_dir:
            picture = _picture_path(caption.attention_dir, path, pictures)
            attention_image.save_attention_image(
                picture, frames, text.split() + ["<end>"],
                np.asarray(captions.attention[0, 0]))
            results[path]["attention"] = picture
    if caption.output:
        write_json(caption.output, results)
    return failures


def _run_on_beam(config):
    """`--runner=beam`: checks Beam and its options, picks the checkpoint
    (unless `--saved_model`), then runs the pipeline."""
    from etenet_tf.beam import caption as beam_caption
    options = beam_caption.check(config)
    stage = None
    if not config.beam.saved_model:
        stage = checkpoint_stages(config.evaluation.checkpoint, RunDir(config.model_dir))[-1]
    return beam_caption.caption(config, options, stage)
