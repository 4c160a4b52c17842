"""`--stage=export`: a SavedModel that TF Serving loads.

Written to `<export_dir>/<name>/<version>/` (TF Serving's layout; versions
are integers, the next free one by default). The export is written to a
hidden temporary directory beside it and renamed when complete, so TF
Serving (which only loads numeric directories) never sees a partial
version, and an interrupted export leaves nothing behind but that
temporary directory, removed by the next export.

Signatures (core TF ops only: no Keras, no TF Text, so that TF Serving's
own op set runs it):
- `serving_default`: `frames_jpeg` string `[batch, frames]` (JPEG bytes)
  -> `captions` string `[batch]`, `scores` float32 `[batch]`.
- `serving_frames`: `frames` float32 `[batch, frames, height, width, 3]`
  (RGB, 0-255, any size) -> the same outputs.
Frames of any size and aspect ratio are resized (antialiased) to the
model's input size in the graph, and a model trained on T frames per clip
(any grid or temporal option) takes T frames spread uniformly over the
frames sent, as `prepare` samples them; the encoder, beam search and
detokenisation all run inside. A wrong dtype or rank, a last dimension
other than 3, zero videos (the message names the input), zero frames,
more than `max_frames` frames per video or `max_total_frames` per request,
a frame larger than `max_frame_pixels` (for JPEGs: the size its header
declares, checked before decoding), or
bytes that are not JPEG fail with InvalidArgument and a message saying
which; the next request is unaffected. (Both inputs are declared with
unknown rank so that the graph itself checks the rank.)

Beside the graph, `assets.extra/input_spec.json` (a directory TF Serving
leaves alone) holds the frame count and size the model was trained on,
`{"num_frames", "image_size"}`, so a batch client (the Beam caption
pipeline) samples frames as `prepare` did without the model directory.
"""

import dataclasses
import glob
import json
import os
import shutil

import keras
import tensorflow as tf

from etenet_tf import files, limits
from etenet_tf.data import records
from etenet_tf.errors import UserError
from etenet_tf.files import write_failure_advice, write_failure_reason, write_json
from etenet_tf.generation import CaptionGenerator

INPUT_SPEC_FILE = os.path.join("assets.extra", "input_spec.json")


class ExportWriteError(UserError):
    """The SavedModel could not be written (disk full, quota, permissions)."""


def read_input_spec(export_path):
    """`{"num_frames", "image_size"}` stored with an export (any
    `tf.io.gfile` path), or None for an export without it."""
    try:
        return json.loads(files.read_text(os.path.join(export_path, INPUT_SPEC_FILE)))
    except (OSError, ValueError):
        return None


def resample_frames(frames, num_frames):
    """Picks `num_frames` of `frames` `[B, F, ...]` along axis 1, spread
    uniformly as `video_decode.sample_indices` does (frame `j` is
    `floor((j + 0.5) * F / num_frames)`; frames repeat when `F` is smaller)."""
    count = tf.shape(frames)[1]
    positions = (tf.range(num_frames, dtype=tf.float64) + 0.5) * tf.cast(count, tf.float64)
    index = tf.minimum(tf.cast(positions / num_frames, tf.int32), count - 1)
    return tf.gather(frames, index, axis=1)


def build_archive(model, decoding, *, max_frames=limits.MAX_SERVING_FRAMES,
                  max_total_frames=limits.MAX_SERVING_TOTAL_FRAMES,
                  max_frame_pixels=limits.MAX_FRAME_PIXELS):
    """A `keras.export.ExportArchive` with both serving signatures.

    Args:
        model: the trained captioner.
        decoding: a `DecodingConfig` (beam search settings; the best
            caption of each video is served).
        max_frames: most frames per video in a request.
        max_total_frames: most frames in a request (videos x frames); the
            encoder runs on all of them at once, so this bounds memory.
        max_frame_pixels: most pixels a frame may have (for JPEGs: may
            declare in its header, checked before decoding).
    """
    size = model.image_size

    def check_request(name, batch, num_frames):
        return [
            tf.debugging.assert_positive(
                batch, message=f"{name} holds zero videos: send at least one video"),
            tf.debugging.assert_positive(num_frames, message="the request holds zero frames"),
            tf.debugging.assert_less_equal(
                num_frames, max_frames, message=f"at most {max_frames} frames per video"),
            tf.debugging.assert_less_equal(
                tf.cast(batch, tf.int64) * tf.cast(num_frames, tf.int64),
                tf.constant(max_total_frames, tf.int64),
                message=f"at most {max_total_frames} frames per request (videos x frames)"),
        ]

    best_only = dataclasses.replace(decoding, num_captions=1)
    generator = CaptionGenerator(model, best_only.sampler(), decoding.max_decode_length)

    def caption(frames):
        captions = generator.captions(frames)
        return {"captions": captions.texts[:, 0], "scores": captions.scores[:, 0]}

    # Inputs are declared with unknown rank and checked by EnsureShape in the
    # graph: a loaded signature (and TF Serving) does not check shapes, and a
    # wrong rank would otherwise fail deep inside with an unrelated message.
    @tf.function(input_signature=[tf.TensorSpec(None, tf.string, name="frames_jpeg")])
    def serve_jpeg(frames_jpeg):
        frames_jpeg = tf.ensure_shape(frames_jpeg, [None, None], name="frames_jpeg")
        batch, num_frames = tf.shape(frames_jpeg)[0], tf.shape(frames_jpeg)[1]
        with tf.control_dependencies(check_request("frames_jpeg", batch, num_frames)):
            if model.num_frames:  # decode only the frames the model uses
                frames_jpeg = resample_frames(frames_jpeg, model.num_frames)
                num_frames = tf.shape(frames_jpeg)[1]
            flat = tf.reshape(frames_jpeg, [-1])
        # one frame at a time: only one full-size frame is ever in memory
        images = tf.map_fn(
            lambda jpeg: records.resize_frames(
                records.decode_jpeg_checked(jpeg, max_frame_pixels), size),
            flat, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
            parallel_iterations=1,
        )
        return caption(tf.reshape(images, [batch, num_frames, size, size, 3]))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="frames")])
    def serve_frames(frames):
        frames = tf.ensure_shape(frames, [None, None, None, None, 3], name="frames")
        shape = tf.shape(frames)
        checks = check_request("frames", shape[0], shape[1]) + [tf.debugging.assert_less_equal(
            tf.cast(shape[2], tf.int64) * tf.cast(shape[3], tf.int64),
            tf.constant(max_frame_pixels, tf.int64),
            message=f"{records.FRAME_TOO_LARGE}: frames have more than {max_frame_pixels} "
                    "pixels (height x width; the limit is --max_frame_pixels)")]
        with tf.control_dependencies(checks):
            if model.num_frames:
                frames = resample_frames(frames, model.num_frames)
                shape = tf.shape(frames)
            flat = tf.reshape(frames, [-1, shape[2], shape[3], 3])
        images = records.resize_frames(flat, size)
        return caption(tf.reshape(images, [shape[0], shape[1], size, size, 3]))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve_jpeg)
    archive.add_endpoint("serving_frames", serve_frames)
    return archive


def next_version(model_root):
    if not os.path.isdir(model_root):
        return 1
    versions = [int(n) for n in os.listdir(model_root) if n.isdigit()]
    return max(versions, default=0) + 1


def check_export_target(config):
    """Checks, before any work, that the export can be written: the export
    root is a writable directory and an explicit version is still free.

    Args:
        config: the `ExportConfig`.

    Returns:
        The model root `<export_dir>/<export_name>`.

    Raises:
        files.WriteTargetError: it cannot; the message names the flag.
    """
    export_dir, name, version = config.export_dir, config.export_name, config.export_version
    files.ensure_directory(export_dir, "export_dir")
    root = os.path.join(export_dir, name)
    files.ensure_directory(root, "export_name",
                           label=f"--export_dir={export_dir} --export_name={name} ({root})")
    if version and os.path.exists(os.path.join(root, str(version))):
        raise files.WriteTargetError(
            f"--export_version={version}: {os.path.join(root, str(version))} already exists "
            "and is never overwritten (TF Serving may be serving it); pass another "
            "--export_version, or 0 for the next free one")
    return root


def export(model, config, decoding, *, max_frame_pixels=limits.MAX_FRAME_PIXELS,
           input_spec=None):
    """Writes the SavedModel atomically; returns its final path.

    Two exports of one model name never run at once (a lock file
    `<export_dir>/.<name>.lock`, kept out of the directory TF Serving
    watches), so they cannot pick the same version.

    Args:
        model: the trained captioner.
        config: the `ExportConfig` (where, which version, request limits).
        decoding: the `DecodingConfig` of the in-graph beam search.
        max_frame_pixels: most pixels a frame of a request may have.
        input_spec: `{"num_frames", "image_size"}` of the training data,
            stored as `INPUT_SPEC_FILE` (None: not stored).
    """
    root = check_export_target(config)
    name = config.export_name
    with files.exclusive_lock(config.export_dir, f"--stage=export --export_name={name}",
                              name=f".{name}.lock"):
        for stale in glob.glob(os.path.join(root, ".tmp-*")):
            shutil.rmtree(stale, ignore_errors=True)
        version = config.export_version or next_version(root)
        final = os.path.join(root, str(version))
        check_export_target(dataclasses.replace(config, export_version=version))
        tmp = os.path.join(root, f".tmp-{version}-{os.getpid()}")
        try:
            with files.atomic_path(final, tmp=tmp):
                archive = build_archive(model, decoding, max_frames=config.max_serving_frames,
                                        max_total_frames=config.max_serving_total_frames,
                                        max_frame_pixels=max_frame_pixels)
                archive.write_out(tmp, verbose=False)
                if input_spec:
                    os.makedirs(os.path.dirname(os.path.join(tmp, INPUT_SPEC_FILE)),
                                exist_ok=True)
                    write_json(os.path.join(tmp, INPUT_SPEC_FILE), input_spec)
        except (OSError, tf.errors.OpError) as e:
            raise ExportWriteError(
                f"could not write the export ({write_failure_reason(e)}); nothing was "
                f"published at {final} and earlier versions are untouched. "
                f"{write_failure_advice(e, root)} and re-run"
            ) from e
    return final
