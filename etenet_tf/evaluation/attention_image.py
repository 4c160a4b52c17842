"""Pictures of temporal attention: which frame each generated word looked at.

Top row: the sampled frames. Below, one row per generated word: the word,
then one cell per frame whose brightness is that frame's attention weight
(normalised per word, so the most attended frame is white).
"""

import numpy as np
from PIL import Image, ImageDraw

from etenet_tf import files

_CELL = 64
_LABEL = 96


def attention_image(frames, words, attention):
    """Renders an attention picture.

    Args:
        frames: uint8 `[T, H, W, 3]`.
        words: generated words (list of str).
        attention: `[len(words) or more, T]` attention weights.

    Returns:
        uint8 RGB array `[H_img, W_img, 3]`.
    """
    frames = np.asarray(frames)
    attention = np.asarray(attention, np.float32)
    words = list(words)[: attention.shape[0]]  # a caption cut at max length has no <end>
    t = frames.shape[0]
    width = _LABEL + t * _CELL
    height = _CELL * (1 + max(len(words), 1))
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    for i, frame in enumerate(frames):
        canvas.paste(Image.fromarray(frame).resize((_CELL, _CELL)), (_LABEL + i * _CELL, 0))
    draw = ImageDraw.Draw(canvas)
    for row, word in enumerate(words):
        y = _CELL * (row + 1)
        weights = attention[row, :t]
        weights = weights / max(float(weights.max()), 1e-9)
        draw.text((4, y + _CELL // 2 - 6), word[:14], fill=(255, 255, 255))
        for i, w in enumerate(weights):
            level = int(round(255 * float(w)))
            draw.rectangle(
                [_LABEL + i * _CELL + 1, y + 1, _LABEL + (i + 1) * _CELL - 2, y + _CELL - 2],
                fill=(level, level, int(level * 0.6)),
            )
    return np.asarray(canvas)


def save_attention_image(path, frames, words, attention):
    """Writes the picture as PNG, atomically."""
    with files.atomic_path(path) as tmp:
        Image.fromarray(attention_image(frames, words, attention)).save(tmp, format="PNG")
