"""Video decoding with PyAV: uniform frame sampling and resize during decode.

This module imports neither TensorFlow nor Keras, so that `prepare` can run
it in worker processes that start in well under a second.

Sampling: `num_frames` frames are taken uniformly over the whole clip, frame
`j` being source frame `floor((j + 0.5) * N / num_frames)` for a clip of `N`
decoded frames. Many streams (webm, flv) declare no frame count, so `N` is
only known at the end of the stream. Decoding therefore keeps a bounded
buffer: every `stride`-th frame is resized and kept, and when the buffer
holds more than `2 * num_frames` frames every second one is dropped and the
stride doubles. At the end each target frame is replaced by the nearest
buffered one (at most `stride / 2` source frames away), so memory stays at
`2 * num_frames` small frames whatever the clip's length or resolution.

Clips with fewer decoded frames than `num_frames` repeat frames: the same
formula picks source frames nearest in time, so the output still spans the
whole clip in order (a 1-frame clip gives `num_frames` copies of it).

Every frame is converted by FFmpeg's swscale straight to `image_size` x
`image_size` RGB (aspect ratio not kept, as for the ImageNet encoders), so
paletted GIFs, bgra, yuv444 and alpha streams all come out as RGB uint8 and
full-size frames never accumulate in memory.

Size limit: a stream that declares more than `max_pixels` pixels per frame
is refused before anything is decoded, and FFmpeg's own `max_pixels`
option (set with slack for its padding) refuses much larger frames later
in the stream (a size change, or a stream that declares no size).

Rotation: a clip whose display matrix says it is shown rotated or
mirrored (a phone held upright records landscape frames and tags them
"rotate 90") is decoded as it is shown. The small square frame is
rotated, which equals rotating before the resize since the aspect ratio
is not kept.

What is opened: only a regular file (`open_video`). A named pipe, socket
or device is refused from its `stat`, without being opened (reading a
FIFO would wait for a writer for ever). FFmpeg gets the file through its
`file` protocol only (`protocol_whitelist=file`: a name such as
`concat:a|b` or `pipe:0` is a file name, nothing else) and with every
demuxer except those that open other files or URLs named inside the file
(HLS `.m3u8` playlists, `ffconcat` scripts, DASH manifests, SDP): a
playlist is a bad video, never followed outside `--video_dir`.

Remote videos (`gs://...`, any `tf.io.gfile` URL): `local_copy` fetches
one into an unnamed temporary file first (importing TensorFlow only
then), so a worker killed half-way leaves no file behind, and messages
name the remote path.

`decode_job` is the one job function (and error wrapper) of every
decoding path: prepare's and caption's worker pools
(`etenet_tf.data.decode_pool`) and the Beam pipelines run it in a worker
process under the `--decode_timeout_s` limit.
"""

import contextlib
import io
import os
import shutil
import signal
import stat
import struct
import tempfile

import av
import numpy as np
from PIL import Image

from etenet_tf import limits


class VideoDecodeError(Exception):
    """A video could not be opened or yielded no frames."""


def sample_indices(num_source_frames, num_frames):
    """Indices of `num_frames` frames spread uniformly over a clip.

    Args:
        num_source_frames: number of frames in the clip (>= 1).
        num_frames: number of frames wanted (>= 1).

    Returns:
        A list of `num_frames` non-decreasing indices in
        `[0, num_source_frames)`. Indices repeat when the clip is shorter
        than `num_frames`.
    """
    if num_source_frames < 1 or num_frames < 1:
        raise ValueError("both frame counts must be >= 1")
    return [
        min(num_source_frames - 1, int((j + 0.5) * num_source_frames / num_frames))
        for j in range(num_frames)
    ]


def orient(image, display_matrix):
    """Turns a decoded `[H, W, C]` frame the way its display matrix shows it.

    Args:
        image: the frame as stored.
        display_matrix: FFmpeg's 3x3 display matrix as 9 int32 (16.16
            fixed point), or None. It maps a stored pixel (x, y) to
            (a*x + c*y, b*x + d*y) on screen, y pointing down; only
            rotations by multiples of 90 degrees and mirroring are applied.

    Returns:
        The frame as displayed (a view; H and W swap for 90 and 270 degrees).
    """
    if display_matrix is None:
        return image
    a, b, _, c, d = (int(np.sign(v)) for v in display_matrix[:5])
    if a == 0 and d == 0 and b and c:  # quarter turn: x' depends on y
        image = image.transpose(1, 0, 2)
        if c < 0:
            image = image[:, ::-1]
        if b < 0:
            image = image[::-1]
    elif b == 0 and c == 0 and a and d:
        if a < 0:
            image = image[:, ::-1]
        if d < 0:
            image = image[::-1]
    return image


def _display_matrix(frame):
    data = frame.side_data.get("DISPLAYMATRIX")
    if data is None or data.buffer_size < 36:
        return None
    return struct.unpack("<9i", bytes(data)[:36])


def decode_video(path, num_frames, image_size, max_pixels=limits.MAX_FRAME_PIXELS):
    """Decodes `num_frames` uniformly sampled RGB frames of a video file.

    Args:
        path: path of a video file in any container FFmpeg reads.
        num_frames: number of frames to return.
        image_size: side of the square output frames, in pixels.
        max_pixels: most pixels (width x height) a frame may have; a
            stream declaring more is refused before decoding.

    Returns:
        uint8 array of shape `[num_frames, image_size, image_size, 3]`,
        upright as the clip's rotation metadata says it is displayed.

    Raises:
        VideoDecodeError: the file is missing, not a video, has no video
            stream, frames larger than `max_pixels`, or no frame could be
            decoded.
    """
    if num_frames < 1 or image_size < 1:
        raise ValueError("num_frames and image_size must be >= 1")
    capacity = max(2 * num_frames, 2)
    kept = []  # resized frames at source indices 0, stride, 2*stride, ...
    stride = 1
    count = 0
    container = open_video(path)
    with container:
        streams = container.streams.video
        if not streams:
            raise VideoDecodeError(f"{path}: the file has no video stream")
        stream = streams[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise VideoDecodeError(_too_large(path, width, height, max_pixels))
        # FFmpeg refuses to allocate larger frames (a stream that declares no
        # size or changes it). Its check includes the decoder's padding, so
        # it gets slack; every decoded frame is checked exactly below.
        stream.codec_context.options = {"max_pixels": str(2 * max_pixels + (1 << 20))}
        try:
            for frame in container.decode(stream):
                if frame.width * frame.height > max_pixels:
                    raise VideoDecodeError(_too_large(path, frame.width, frame.height, max_pixels))
                if count % stride == 0:
                    kept.append(orient(
                        frame.reformat(
                            width=image_size, height=image_size, format="rgb24"
                        ).to_ndarray(),
                        _display_matrix(frame),
                    ))
                    if len(kept) > capacity:
                        kept = kept[::2]
                        stride *= 2
                count += 1
        except (av.FFmpegError, ValueError) as e:
            # A truncated file: keep what decoded, fail only if nothing did.
            if count == 0:
                raise VideoDecodeError(f"{path}: no decodable frames ({_reason(e)}; frames "
                                       f"over {max_pixels} pixels are refused)"
                                       if "max_pixels" in str(e) else
                                       f"{path}: no decodable frames ({_reason(e)})") from e
    if count == 0:
        raise VideoDecodeError(f"{path}: the video stream holds no frames")
    picks = [
        min(len(kept) - 1, int(round(i / stride)))
        for i in sample_indices(count, num_frames)
    ]
    return np.stack([kept[k] for k in picks])


def encode_jpeg(frame, quality=90):
    """JPEG-encodes one RGB uint8 frame `[H, W, 3]`; returns bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_video_to_jpegs(path, num_frames, image_size, quality=90,
                          max_pixels=limits.MAX_FRAME_PIXELS):
    """`decode_video`, then JPEG-encodes each frame. Used by prepare workers.

    Returns:
        A list of `num_frames` JPEG byte strings.
    """
    frames = decode_video(path, num_frames, image_size, max_pixels)
    return [encode_jpeg(f, quality) for f in frames]


def worker_init():
    """Initialiser of the decoding worker processes: Ctrl-C and SIGTERM are
    the parent's to handle (it stops the workers), so a worker does not
    print a traceback each. The parent starts the workers with both
    signals blocked, so none arrives before this runs; they are unblocked
    once ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def decode_job(job):
    """The job of every decoding worker (prepare, caption, Beam):
    `(path, num_frames, image_size, quality, max_pixels)` ->
    `(result, None)` or `(None, error message)`.

    The result is a list of `num_frames` JPEGs at `quality` (prepare), or,
    with `quality=None`, the uint8 frames `[num_frames, image_size,
    image_size, 3]` (caption). A remote path is fetched first
    (`local_copy`); messages name the path as given. Any decoder failure
    is an error message, never an exception: one bad video must not end
    the run.

    It lives here, not in `prepare`, because a worker process imports the
    module of the function it runs, and this one imports no TensorFlow
    (unless the video is remote).
    """
    path, num_frames, image_size, quality, max_pixels = job
    try:
        with local_copy(path) as local:
            try:
                frames = decode_video(local, num_frames, image_size, max_pixels)
            except VideoDecodeError as e:
                return None, str(e).replace(local, path)
        if quality is None:
            return frames, None
        return [encode_jpeg(f, quality) for f in frames], None
    except VideoDecodeError as e:
        return None, str(e)
    except Exception as e:  # a decoder crash must not kill the whole run
        return None, f"{path}: {type(e).__name__}: {e}"


def is_remote(path):
    return "://" in str(path)


# Demuxers that open other files or URLs named inside the file (playlists,
# concat scripts, manifests, session descriptions): never used.
REFUSED_DEMUXERS = frozenset({"hls", "applehttp", "concat", "dash", "imf", "sdp", "rtsp", "rtp"})
_PLAYLIST_MAGIC = ((b"#EXTM3U", "an HLS playlist (.m3u8)"), (b"ffconcat", "an ffconcat script"),
                   (b"<?xml", "an XML manifest"), (b"v=0", "an SDP session description"))
_demuxers = []


def _allowed_demuxers():
    """FFmpeg's demuxers except `REFUSED_DEMUXERS`, as its `format_whitelist`."""
    if not _demuxers:
        names = []
        for name in sorted(av.formats_available):
            try:
                av.ContainerFormat(name, "r")
            except ValueError:
                continue  # a muxer only
            if name not in REFUSED_DEMUXERS:
                names.append(name)
        _demuxers.append(",".join(names))
    return _demuxers[0]


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a directory"))


def file_kind(mode):
    """What a `st_mode` that is not a regular file is (`a named pipe (FIFO)`)."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def check_regular_file(path):
    """Raises `VideoDecodeError` unless `path` is a regular file (after
    symlinks); nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise VideoDecodeError(f"{path}: cannot open as a video ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise VideoDecodeError(f"{path}: is {file_kind(mode)}, not a regular file; only regular "
                               "files are read as videos")


def open_video(path):
    """Opens a local video file with PyAV: regular files only, the `file`
    protocol only, no playlist or concat demuxer.

    Raises:
        VideoDecodeError: not a regular file, a playlist, or not a video.
    """
    check_regular_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as e:
        raise VideoDecodeError(f"{path}: cannot open as a video ({e.strerror or e})") from None
    for magic, kind in _PLAYLIST_MAGIC:
        if head.startswith(magic):
            raise VideoDecodeError(f"{path}: is {kind}, not a video file; playlists are not "
                                   "followed: give the video files themselves")
    try:
        return av.open("file:" + os.path.abspath(path), mode="r", options={
            "protocol_whitelist": "file", "format_whitelist": _allowed_demuxers()})
    except (av.FFmpegError, OSError, UnicodeError, ValueError) as e:
        raise VideoDecodeError(f"{path}: cannot open as a video ({_reason(e)})") from e


@contextlib.contextmanager
def local_copy(path):
    """Yields a local path with the content of video `path`: `path` itself
    when it is local, else an unnamed temporary copy (`/proc/self/fd/N`
    on Linux: the kernel frees it when the process ends, however it ends).

    Raises:
        VideoDecodeError: a remote file that cannot be read.
    """
    if not is_remote(path):
        yield path
        return
    import tensorflow as tf  # remote paths only: local decoding stays TF-free
    named = not os.path.isdir("/proc/self/fd")
    directory = tempfile.mkdtemp(prefix="etenet-video-") if named else None
    try:
        if named:
            target = open(os.path.join(directory, "video"), "w+b")
        else:
            target = tempfile.TemporaryFile(prefix="etenet-video-")
        with target:
            try:
                with tf.io.gfile.GFile(path, "rb") as source:
                    shutil.copyfileobj(source, target, 1 << 20)
                target.flush()
            except tf.errors.OpError as e:
                reason = "no such file" if isinstance(e, tf.errors.NotFoundError) else \
                    _reason(getattr(e, "message", None) or e)
                raise VideoDecodeError(f"{path}: cannot read ({reason})") from None
            yield target.name if named else f"/proc/self/fd/{target.fileno()}"
    finally:
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


def _too_large(path, width, height, max_pixels):
    return (f"{path}: frames of {width}x{height} ({width * height} pixels) exceed the "
            f"limit of {max_pixels} pixels (--max_frame_pixels)")


def _reason(error):
    # FFmpeg's errors end with the name it opened (`file:/proc/self/fd/7`):
    # the message names the video itself, so only the reason is kept
    text = (isinstance(error, av.FFmpegError) and error.strerror) or str(error).strip() or \
        type(error).__name__
    return str(text).splitlines()[0]
