"""`--stage=caption`: caption a user's own video files.

Prints `path<TAB>caption` per video on stdout. A file that cannot be
decoded gets `path<TAB>ERROR: reason` on stderr and the others still get
captions; the caller exits non-zero if any failed.
"""

import os
import sys

import numpy as np

from etenet_tf.data import video_decode
from etenet_tf.evaluation import attention_image
from etenet_tf.evaluation import predict
from etenet_tf import files
from etenet_tf.files import write_json
from etenet_tf.training import stages as stages_lib


def caption_frames(model, frames, *, beam_size, max_length, length_penalty):
    """Captions uint8 frames `[B, T, S, S, 3]`; returns (captions, scores, attention)."""
    generate = predict.generation_function(model, "frames", beam_size, max_length,
                                           length_penalty)
    captions, scores, attention, _ = generate(frames)
    return ([c.decode("utf-8") for c in captions.numpy()], scores.numpy(), attention.numpy())


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


def run_caption(cfg):
    """Captions `cfg.videos`.

    Returns:
        dict path -> error message of the videos that failed.
    """
    # where the results go is checked before any video is captioned
    if cfg.output:
        files.check_file_target(cfg.output, "output")
    if cfg.attention_dir:
        files.ensure_directory(cfg.attention_dir, "attention_dir")
    stage = "auto" if cfg.checkpoint == "both" else cfg.checkpoint
    model, stage = stages_lib.load_trained_model(cfg.model_dir, stage)
    num_frames = stages_lib.load_input_spec(cfg.model_dir)["num_frames"]
    results, failures, pictures = {}, {}, set()
    for path in cfg.videos:
        try:
            frames = video_decode.decode_video(path, num_frames, model.image_size,
                                               max_pixels=cfg.max_frame_pixels)
        except video_decode.VideoDecodeError as e:
            failures[path] = str(e)
            results[path] = {"error": str(e)}
            print(f"{path}\tERROR: {e}", file=sys.stderr, flush=True)
            continue
        captions, scores, attention = caption_frames(
            model, frames[None], beam_size=cfg.beam_size, max_length=cfg.max_decode_length,
            length_penalty=cfg.length_penalty,
        )
        results[path] = {"caption": captions[0], "score": float(scores[0])}
        print(f"{path}\t{captions[0]}", flush=True)
        if cfg.attention_dir:
            picture = _picture_path(cfg.attention_dir, path, pictures)
            attention_image.save_attention_image(
                picture, frames, captions[0].split() + ["<end>"], np.asarray(attention[0]),
            )
            results[path]["attention"] = picture
    if cfg.output:
        write_json(cfg.output, results)
    return failures
