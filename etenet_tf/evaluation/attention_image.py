"""Pictures of attention: which frame (and where in it) each word looked at.

Top row: the sampled frames. Below, one row per generated word: the word,
then one cell per frame whose brightness is that frame's attention weight
(normalised per word, so the most attended frame is brightest). With a
spatial grid, each cell shows the frame itself, lit where the word
attended (grid cells scaled to the frame) and dimmed elsewhere.
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
        attention: `[len(words) or more, T * cells]` attention weights over
            frame-major memory tokens (`cells` = grid cells per frame, 1
            without a grid).

    Returns:
        uint8 RGB array `[H_img, W_img, 3]`.
    """
    frames = np.asarray(frames)
    attention = np.asarray(attention, np.float32)
    words = list(words)[: attention.shape[0]]  # a caption cut at max length has no <end>
    t = frames.shape[0]
    cells = attention.shape[1] // t
    grid = int(round(cells ** 0.5))
    attention = attention[:, : t * cells].reshape(attention.shape[0], t, cells)
    width = _LABEL + t * _CELL
    height = _CELL * (1 + max(len(words), 1))
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    thumbs = [np.asarray(Image.fromarray(f).resize((_CELL, _CELL)), np.float32) for f in frames]
    for i, thumb in enumerate(thumbs):
        canvas.paste(Image.fromarray(thumb.astype(np.uint8)), (_LABEL + i * _CELL, 0))
    draw = ImageDraw.Draw(canvas)
    for row, word in enumerate(words):
        y = _CELL * (row + 1)
        per_frame = attention[row].sum(-1)
        per_frame = per_frame / max(float(per_frame.max()), 1e-9)
        draw.text((4, y + _CELL // 2 - 6), word[:14], fill=(255, 255, 255))
        for i, w in enumerate(per_frame):
            if grid > 1 and grid * grid == cells:
                where = attention[row, i].reshape(grid, grid)
                where = where / max(float(where.max()), 1e-9)
                light = np.asarray(Image.fromarray((where * 255).astype(np.uint8)).resize(
                    (_CELL, _CELL), Image.NEAREST), np.float32) / 255.0
                lit = thumbs[i] * (0.15 + 0.85 * light[..., None]) * float(w)
                canvas.paste(Image.fromarray(lit.clip(0, 255).astype(np.uint8)),
                             (_LABEL + i * _CELL, y))
            else:
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
