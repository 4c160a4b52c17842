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

Integrity: beside each shard, `<shard>.sha256` holds its SHA-256 (in
`sha256sum` format, so `sha256sum -c *.sha256` checks a directory by
hand). It is written before the shard is renamed into place, so every
shard has one. `verify_shard` compares them; whoever keeps an existing
shard (prepare, the feature cache) verifies it first, and a reader that
hits a corrupt record reports the shard by name (`reporting_corruption`).

The records directory may be remote (`gs://...`, see `etenet_tf.files`):
listing, checking and writing shards work the same there.
"""

import contextlib
import glob
import hashlib
import os
import re
import tempfile

import numpy as np
import tensorflow as tf

from etenet_tf import files, limits
from etenet_tf.errors import UserError


class CorruptRecordsError(UserError):
    """A record shard is damaged; the message names it and the fix."""


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def list_shards(directory, split):
    """Sorted complete shard paths of `split` in `directory`."""
    return files.glob_paths(os.path.join(directory, f"{split}-*-of-*.tfrecord"))


def remove_partial_files(directory):
    """Deletes the temporary files an interrupted writer left behind."""
    for path in files.glob_paths(os.path.join(directory, "*.tmp-*")):
        try:
            files.remove(path)
        except OSError:
            pass


def checksum_path(path):
    return path + ".sha256"


def file_sha256(path):
    digest = hashlib.sha256()
    with files.open_binary(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path, serialized_records):
    """Writes records to `path` via a temporary file and a rename, with its
    checksum file written before the rename.

    A remote shard is written to a local temporary file first, hashed
    there, then copied up once (`etenet_tf.files` for the rename).

    Returns:
        Number of records written.
    """
    if files.is_remote(path):
        return _write_remote(path, serialized_records)
    count = 0
    with files.atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in serialized_records:
                writer.write(record)
                count += 1
        files.write_text(checksum_path(path),
                         f"{file_sha256(tmp)}  {os.path.basename(path)}\n")
    return count


def _write_remote(path, serialized_records):
    count = 0
    with tempfile.TemporaryDirectory(prefix="etenet-shard-") as local_dir:
        local = os.path.join(local_dir, os.path.basename(path))
        with tf.io.TFRecordWriter(local) as writer:
            for record in serialized_records:
                writer.write(record)
                count += 1
        with files.atomic_path(path) as tmp:
            with files.remote_errors(path):
                files.gfile().copy(local, tmp, overwrite=True)
            files.write_text(checksum_path(path),
                             f"{file_sha256(local)}  {os.path.basename(path)}\n")
    return count


def verify_shard(path):
    """Checks a shard against its checksum file.

    A shard without one (written before checksums existed) is read through
    instead, which checks every record's CRC.

    Returns:
        None if the shard is intact, else why not (for a message).
    """
    if not files.isfile(path):
        return "missing"
    try:
        expected = files.read_text(checksum_path(path)).split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        expected = None
    if expected is None:
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.OpError as e:
            return _first_line(e)
        return None
    if file_sha256(path) != expected:
        return f"its SHA-256 differs from {os.path.basename(checksum_path(path))}"
    return None


def remove_shard(path):
    """Deletes a shard and its checksum file."""
    for p in (path, checksum_path(path)):
        files.remove(p)


def _first_line(error):
    """The first line of a TF error, without its `{{function_node ...}}`
    and `[Op:...]` decorations: e.g. `corrupted record at 19840`."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{[^}]*\}\}", "", message.strip().splitlines()[0] if message.strip()
                     else "")
    message = re.sub(r"\s*\[Op:.*$", "", message).strip()
    return message or type(error).__name__


@contextlib.contextmanager
def reporting_corruption(*sources):
    """Turns a corrupt-record error raised in the block into a
    `CorruptRecordsError` that names the damaged shard and the fix.

    TF's own message (`corrupted record at 1234`) names neither. On such
    an error every shard of `sources` is verified to find the culprit.

    Args:
        *sources: `(directory, fix)` pairs: where shards are read from, and
            what to do when one of them is damaged.
    """
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        if isinstance(e, tf.errors.InvalidArgumentError) and FRAME_TOO_LARGE not in str(e):
            raise
        for directory, fix in sources:
            for path in sorted(glob.glob(os.path.join(directory, "*-of-*.tfrecord"))):
                reason = verify_shard(path)
                if reason:
                    raise CorruptRecordsError(
                        f"the record shard {path} is corrupt ({reason}); {fix}") from None
        directories = ", ".join(d for d, _ in sources)
        raise CorruptRecordsError(
            f"reading the records in {directories} failed ({_first_line(e)}); "
            f"{sources[0][1]}") from None


def _bytes_list(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _utf8(values):
    return [v.encode("utf-8") for v in values]


def frames_example(video_id, jpeg_frames, captions):
    """Serialized frame record.

    Serialized deterministically (map keys sorted): protobuf orders the
    `features` map by a hash seeded per process otherwise, so the same
    record would differ in bytes between two runs, or between the
    process pool and a Beam worker.
    """
    return tf.train.Example(features=tf.train.Features(feature={
        "video_id": _bytes_list(_utf8([video_id])),
        "frames": _bytes_list(jpeg_frames),
        "captions": _bytes_list(_utf8(captions)),
    })).SerializeToString(deterministic=True)


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
    })).SerializeToString(deterministic=True)


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
