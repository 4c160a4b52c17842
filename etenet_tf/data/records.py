"""TFRecord formats and atomic shard writing.

Two record kinds share the keys `video_id` and `captions` (all references):
- frame records (written by `prepare`): `frames` = list of JPEG bytes;
- feature records (the pretrain cache): `features` = raw float32 bytes of
  the encoder's output for one clip (`[frames, grid, grid, channels]`),
  with `feature_shape`.

Shards are named `<split>-<i>-of-<n>.tfrecord`. A shard is written to a
temporary name and renamed when complete, so a file with a final name is
always whole: an interrupted run leaves only `*.tmp-*` files, removed on
the next run.
"""

import glob
import os

import numpy as np
import tensorflow as tf


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
    """Serialized feature record; `features` is float32 `[T, G, G, C]`."""
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
    feature_shape=tf.io.VarLenFeature(tf.int64),
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
    """-> dict(video_id, features float32 [T, G, G, C], captions [R])."""
    ex = tf.io.parse_single_example(serialized, FEATURES_SPEC)
    shape = tf.sparse.to_dense(ex["feature_shape"])
    features = tf.reshape(tf.io.decode_raw(ex["features"], tf.float32), shape)
    features = tf.ensure_shape(features, [None, None, None, None])
    return {
        "video_id": ex["video_id"],
        "features": features,
        "captions": tf.sparse.to_dense(ex["captions"]),
    }


def decode_jpeg_frames(jpegs, image_size):
    """JPEG strings `[T]` -> uint8 `[T, image_size, image_size, 3]`.

    Frames are resized only if the records hold another size.
    """
    def decode(jpeg):
        image = tf.io.decode_jpeg(jpeg, channels=3)
        if image_size:
            shape = tf.shape(image)
            image = tf.cond(
                tf.logical_and(shape[0] == image_size, shape[1] == image_size),
                lambda: image,
                lambda: tf.cast(
                    tf.clip_by_value(
                        tf.round(tf.image.resize(image, [image_size, image_size])), 0, 255
                    ),
                    tf.uint8,
                ),
            )
            image = tf.ensure_shape(image, [image_size, image_size, 3])
        return image

    return tf.map_fn(
        decode, jpegs, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8)
    )
