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
"""

import io

import av
import numpy as np
from PIL import Image

# Anything larger is almost certainly a corrupt header; refuse early.
MAX_DIMENSION = 16384


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


def decode_video(path, num_frames, image_size):
    """Decodes `num_frames` uniformly sampled RGB frames of a video file.

    Args:
        path: path of a video file in any container FFmpeg reads.
        num_frames: number of frames to return.
        image_size: side of the square output frames, in pixels.

    Returns:
        uint8 array of shape `[num_frames, image_size, image_size, 3]`.

    Raises:
        VideoDecodeError: the file is missing, not a video, has no video
            stream, or no frame could be decoded.
    """
    if num_frames < 1 or image_size < 1:
        raise ValueError("num_frames and image_size must be >= 1")
    capacity = max(2 * num_frames, 2)
    kept = []  # resized frames at source indices 0, stride, 2*stride, ...
    stride = 1
    count = 0
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoDecodeError(f"{path}: cannot open as a video ({_reason(e)})") from e
    with container:
        streams = container.streams.video
        if not streams:
            raise VideoDecodeError(f"{path}: the file has no video stream")
        stream = streams[0]
        stream.thread_type = "AUTO"
        if stream.width > MAX_DIMENSION or stream.height > MAX_DIMENSION:
            raise VideoDecodeError(
                f"{path}: declared size {stream.width}x{stream.height} exceeds "
                f"{MAX_DIMENSION} pixels per side"
            )
        try:
            for frame in container.decode(stream):
                if count % stride == 0:
                    kept.append(
                        frame.reformat(
                            width=image_size, height=image_size, format="rgb24"
                        ).to_ndarray()
                    )
                    if len(kept) > capacity:
                        kept = kept[::2]
                        stride *= 2
                count += 1
        except (av.FFmpegError, ValueError) as e:
            # A truncated file: keep what decoded, fail only if nothing did.
            if count == 0:
                raise VideoDecodeError(f"{path}: no decodable frames ({_reason(e)})") from e
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


def decode_video_to_jpegs(path, num_frames, image_size, quality=90):
    """`decode_video`, then JPEG-encodes each frame. Used by prepare workers.

    Returns:
        A list of `num_frames` JPEG byte strings.
    """
    frames = decode_video(path, num_frames, image_size)
    return [encode_jpeg(f, quality) for f in frames]


def _reason(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
