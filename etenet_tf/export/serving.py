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
Frames are resized to the model's input size in the graph, and a model
trained on T frames per clip (any grid or temporal option) takes T frames
spread uniformly over the frames sent, as `prepare` samples them; the encoder,
beam search and detokenisation all run inside. A wrong dtype or rank, a
last dimension other than 3, zero frames, more than `max_frames` frames,
or bytes that are not JPEG fail with InvalidArgument and a message saying
which; the next request is unaffected. (Both inputs are declared with
unknown rank so that the graph itself checks the rank.)
"""

import glob
import os
import shutil

import keras
import tensorflow as tf

from etenet_tf.evaluation import predict
from etenet_tf.files import write_failure_reason
from etenet_tf.training import stages as stages_lib


class ExportWriteError(Exception):
    """The SavedModel could not be written (disk full, quota, permissions)."""


def _resize(frames, size):
    """float `[N, H, W, 3]` -> float `[N, size, size, 3]` (no-op when equal)."""
    shape = tf.shape(frames)
    same = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
    return tf.cond(same, lambda: tf.ensure_shape(frames, [None, size, size, 3]),
                   lambda: tf.image.resize(frames, [size, size]))


def resample_frames(frames, num_frames):
    """Picks `num_frames` of `frames` `[B, F, ...]` along axis 1, spread
    uniformly as `video_decode.sample_indices` does (frame `j` is
    `floor((j + 0.5) * F / num_frames)`; frames repeat when `F` is smaller)."""
    count = tf.shape(frames)[1]
    positions = (tf.range(num_frames, dtype=tf.float64) + 0.5) * tf.cast(count, tf.float64)
    index = tf.minimum(tf.cast(positions / num_frames, tf.int32), count - 1)
    return tf.gather(frames, index, axis=1)


def build_archive(model, *, beam_size, max_length, length_penalty, max_frames):
    """A `keras.export.ExportArchive` with both serving signatures."""
    size = model.image_size

    def check_frames(num_frames):
        return [
            tf.debugging.assert_positive(num_frames, message="the request holds zero frames"),
            tf.debugging.assert_less_equal(
                num_frames, max_frames, message=f"at most {max_frames} frames per video"),
        ]

    generator = predict.caption_generator(model, beam_size, max_length, length_penalty)

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
        with tf.control_dependencies(check_frames(num_frames)):
            if model.num_frames:  # decode only the frames the model uses
                frames_jpeg = resample_frames(frames_jpeg, model.num_frames)
                num_frames = tf.shape(frames_jpeg)[1]
            flat = tf.reshape(frames_jpeg, [-1])
        images = tf.map_fn(
            lambda b: _resize(tf.cast(tf.io.decode_jpeg(b, channels=3), tf.float32)[None], size)[0],
            flat, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        return caption(tf.reshape(images, [batch, num_frames, size, size, 3]))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="frames")])
    def serve_frames(frames):
        frames = tf.ensure_shape(frames, [None, None, None, None, 3], name="frames")
        with tf.control_dependencies(check_frames(tf.shape(frames)[1])):
            if model.num_frames:
                frames = resample_frames(frames, model.num_frames)
            shape = tf.shape(frames)
            flat = tf.reshape(frames, [-1, shape[2], shape[3], 3])
        images = _resize(flat, size)
        return caption(tf.reshape(images, [shape[0], shape[1], size, size, 3]))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve_jpeg)
    archive.add_endpoint("serving_frames", serve_frames)
    return archive


def next_version(model_root):
    versions = [int(n) for n in os.listdir(model_root) if n.isdigit()] if os.path.isdir(model_root) else []
    return max(versions, default=0) + 1


def export(model, export_dir, name, *, version=0, beam_size=5, max_length=20,
           length_penalty=0.6, max_frames=64):
    """Writes the SavedModel atomically; returns its final path."""
    root = os.path.join(export_dir, name)
    os.makedirs(root, exist_ok=True)
    for stale in glob.glob(os.path.join(root, ".tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)
    version = version or next_version(root)
    final = os.path.join(root, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; pass another --export_version")
    tmp = os.path.join(root, f".tmp-{version}-{os.getpid()}")
    try:
        archive = build_archive(model, beam_size=beam_size, max_length=max_length,
                                length_penalty=length_penalty, max_frames=max_frames)
        archive.write_out(tmp, verbose=False)
        os.replace(tmp, final)
    except (OSError, tf.errors.OpError) as e:
        raise ExportWriteError(
            f"could not write the export ({write_failure_reason(e)}); nothing was "
            f"published at {final} and earlier versions are untouched. Free disk space and re-run"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def run_export(cfg):
    stage = "auto" if cfg.checkpoint == "both" else cfg.checkpoint
    model, stage = stages_lib.load_trained_model(cfg.model_dir, stage)
    path = export(model, cfg.export_dir, cfg.export_name, version=cfg.export_version,
                  beam_size=cfg.beam_size, max_length=cfg.max_decode_length,
                  length_penalty=cfg.length_penalty, max_frames=cfg.max_serving_frames)
    print(f"exported the {stage} model to {path} (signatures: serving_default <- frames_jpeg, "
          f"serving_frames <- frames)")
    return path
