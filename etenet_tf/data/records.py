"""TFRecord formats and atomic shard writing.

Two record kinds share the keys `video_id` and `captions` (all references):
- frame records (written by `prepare`): `frames` = list of JPEG bytes;
- feature records (the pretrain cache): `features` = raw float32 bytes of
  `[frames, dim]`, with `feature_shape`.

Shards are named `<split>-<i>-of-<n>.tfrecord`. A shard is written to a
temporary name and renamed when complete, so a file with a final name is
always whole: an interrupted run leaves only `*.tmp-*` files, removed on
the next run.
"""

import glob
import os

import numpy as np
import tensorflow as tf

from etenet_tf import limits


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def list_shards(directory, split):
    """Sorted complete shard paths of `split` in `directory`."""
    return sorted(glob.glob(os.path.join(directory, f"{split}-*-of-*.tfrecord")))


def remove_partial_files(directory):
    """Deletes the temporary files an interrupted writer left behind."""
    for path in glob.glob(os.path.join(directory, "*.tmp-*")):
        try:
            os.remove(path)
        except OSError:
            pass


def write_atomically(path, serialized_records):
    """Writes records to `path` via a temporary file and a rename.

    Returns:
        Number of records written.
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in serialized_records:
                writer.write(record)
                count += 1
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return count


def _bytes_list(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _utf8(values):
    return [v.encode("utf-8") for v in values]


def frames_example(video_id, jpeg_frames, captions):
    """Serialized frame record."""
    return tf.train.Example(features=tf.train.Features(feature={
        "video_id": _bytes_list(_utf8([video_id])),
        "frames": _bytes_list(jpeg_frames),
        "captions": _bytes_list(_utf8(captions)),
    })).SerializeToString()


def features_example(video_id, features, captions):
    """Serialized feature record; `features` is float32 `[frames, dim]`."""
    features = np.asarray(features, np.float32)
    return tf.train.Example(features=tf.train.Features(feature={
        "video_id": _bytes_list(_utf8([video_id])),
        "features": _bytes_list([features.tobytes()]),
        "feature_shape": tf.train.Feature(
            int64_list=tf.train.Int64List(value=list(features.shape))
        ),
        "captions": _bytes_list(captions),
    })).SerializeToString()


_COMMON_SPEC = {
    "video_id": tf.io.FixedLenFeature([], tf.string),
    "captions": tf.io.VarLenFeature(tf.string),
}
FRAMES_SPEC = dict(_COMMON_SPEC, frames=tf.io.VarLenFeature(tf.string))
FEATURES_SPEC = dict(
    _COMMON_SPEC,
    features=tf.io.FixedLenFeature([], tf.string),
    feature_shape=tf.io.FixedLenFeature([2], tf.int64),
)


def parse_frames(serialized):
    """-> dict(video_id, frames (JPEG strings [T]), captions [R])."""
    ex = tf.io.parse_single_example(serialized, FRAMES_SPEC)
    return {
        "video_id": ex["video_id"],
        "frames": tf.sparse.to_dense(ex["frames"]),
        "captions": tf.sparse.to_dense(ex["captions"]),
    }


def parse_features(serialized):
    """-> dict(video_id, features float32 [T, D], captions [R])."""
    ex = tf.io.parse_single_example(serialized, FEATURES_SPEC)
    features = tf.reshape(tf.io.decode_raw(ex["features"], tf.float32), ex["feature_shape"])
    return {
        "video_id": ex["video_id"],
        "features": features,
        "captions": tf.sparse.to_dense(ex["captions"]),
    }


FRAME_TOO_LARGE = "frame too large"  # starts the error of `decode_jpeg_checked`


def decode_jpeg_checked(jpeg, max_pixels, channels=3):
    """Decodes one JPEG after checking the size its header declares.

    Core TF ops only (it runs in the serving graph). The header is read
    with `tf.io.extract_jpeg_shape` first, so a small file that declares a
    huge image fails with InvalidArgument before any pixel memory is
    allocated.

    Args:
        jpeg: scalar string tensor.
        max_pixels: most pixels (height x width) allowed.
        channels: channels of the decoded image.

    Returns:
        uint8 `[H, W, channels]`.
    """
    shape = tf.io.extract_jpeg_shape(jpeg, output_type=tf.int64)
    check = tf.debugging.assert_less_equal(
        shape[0] * shape[1], tf.constant(max_pixels, tf.int64),
        message=f"{FRAME_TOO_LARGE}: a JPEG frame declares more than {max_pixels} pixels "
                "(height x width; the limit is --max_frame_pixels)",
    )
    with tf.control_dependencies([check]):
        return tf.io.decode_jpeg(jpeg, channels=channels)


def resize_frames(images, size):
    """uint8 or float `[..., H, W, 3]` -> float32 `[..., size, size, 3]`.

    Antialiased, so a large frame is averaged down (as FFmpeg's scaler does
    in prepare) rather than sampled. A frame of the target size comes back
    unchanged, so no branch on the size is needed (a `tf.cond` on it inside
    `tf.map_fn` runs both branches' shape checks once the SavedModel is
    loaded).
    """
    return tf.image.resize(images, [size, size], antialias=True)


def decode_jpeg_frames(jpegs, image_size, max_pixels=limits.MAX_FRAME_PIXELS):
    """JPEG strings `[T]` -> uint8 `[T, image_size, image_size, 3]`.

    Prepare writes frames of `image_size`; frames of another size are
    resized (not when `image_size` is None), and a frame declaring more
    than `max_pixels` is an error.
    """
    def decode(jpeg):
        image = decode_jpeg_checked(jpeg, max_pixels)
        if not image_size:
            return image
        image = tf.cast(tf.clip_by_value(tf.round(resize_frames(image, image_size)), 0, 255),
                        tf.uint8)
        return tf.ensure_shape(image, [image_size, image_size, 3])

    return tf.map_fn(
        decode, jpegs, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8)
    )
