"""Where and when: turns the encoder's frame grids into attention memory.

The paper's decoder attends over one pooled vector per frame with an
attention that ignores frame order: a clip and its reverse give the same
memory in another order, so "moves left" and "moves right" cannot be told
apart, and pooling loses where the object is. This layer keeps both:

- spatial: every cell of the `grid x grid` feature map becomes a memory
  token, with a learned embedding of its cell;
- temporal `"position"`: a learned embedding of the frame's index is added
  to its tokens, so attention and the decoder know when each token is;
- temporal `"conv"`: the position embeddings, then a residual 3-D
  convolution (3 frames x 3 x 3 cells) over the token grid, in the spirit
  of SA-LSTM's 3-D CNN for local motion: each token also describes how
  its neighbourhood changes from the frame before to the frame after, and
  the decoder's initial state (the mean of the tokens) sees the motion.
- temporal `"gru"`: the position embeddings, then each frame's whole grid
  through a bidirectional GRU over the frames, added to its tokens: every
  token knows where things are before and after its frame.
- temporal `"delta"`: `"gru"`, and before the GRU each token gets a
  residual of how its cell changes (a ReLU layer over its difference
  from the frame before and to the frame after, 0 past the ends), as
  frame differencing gives motion: with an object per cell, a token says
  whether and how that object moves or changes size then, and the mean
  of the tokens (the decoder's initial state) whether anything changed.
"""

import keras
from keras import ops

TEMPORAL_MODES = ("none", "position", "conv", "gru", "delta")


@keras.saving.register_keras_serializable(package="etenet_tf")
class SpatioTemporalContext(keras.layers.Layer):
    """Frame feature grids `[B, T, G, G, C]` -> memory tokens `[B, T*G*G, D]`.

    Tokens are ordered frame-major (all cells of frame 0, then frame 1...).
    Features are layer-normalised, projected to `context_dim` (unless it
    is 0), then get the time and cell embeddings and, for `"conv"`, the
    temporal convolution's residual.

    Args:
        num_frames: frames per clip `T` (the time embedding has one row
            per frame; the serving graph resamples other frame counts).
        spatial_grid: cells per side `G` of the encoder's grid.
        temporal: one of `TEMPORAL_MODES` (see module docstring).
        context_dim: token size `D`; 0 keeps the encoder's channels `C`
            (not allowed with `"conv"`, `"gru"` or `"delta"`, whose
            layers grow with `D^2`).
    """

    def __init__(self, num_frames, spatial_grid=1, temporal="conv", context_dim=256, **kwargs):
        super().__init__(**kwargs)
        if temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {', '.join(TEMPORAL_MODES)}, "
                             f"not {temporal!r}")
        if temporal in ("conv", "gru", "delta") and not context_dim:
            raise ValueError(f"temporal={temporal!r} needs context_dim > 0")
        if num_frames < 1 or spatial_grid < 1:
            raise ValueError("num_frames and spatial_grid must be >= 1")
        self.num_frames = num_frames
        self.spatial_grid = spatial_grid
        self.temporal = temporal
        self.context_dim = context_dim

    def build(self, features_shape):
        policy = self.dtype_policy  # sublayers follow this layer's dtype policy
        channels = features_shape[-1]
        dim = self.context_dim or channels
        cells = self.spatial_grid
        self.feature_norm = keras.layers.LayerNormalization(name="feature_norm", dtype=policy)
        self.feature_norm.build((None, self.num_frames, cells, cells, channels))
        self.projection = None
        if self.context_dim:
            self.projection = keras.layers.Dense(self.context_dim, name="projection", dtype=policy)
            self.projection.build((None, self.num_frames, cells, cells, channels))
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.time_embedding = None
        if self.temporal != "none":
            self.time_embedding = self.add_weight((self.num_frames, dim), initializer=init,
                                                  name="time_embedding")
        self.cell_embedding = None
        if cells > 1:
            self.cell_embedding = self.add_weight((cells, cells, dim), initializer=init,
                                                  name="cell_embedding")
        self.change = None
        if self.temporal == "delta":
            self.change = keras.layers.Dense(dim, activation="relu", name="change",
                                             dtype=policy)
            self.change.build((None, self.num_frames, cells, cells, 2 * dim))
        self.clip_summary = None
        if self.temporal in ("gru", "delta"):
            # each frame's whole grid -> a bidirectional GRU over frames: every
            # token learns where things are before and after its frame
            self.frame_summary = keras.layers.Dense(dim, activation="relu", name="frame_summary",
                                                    dtype=policy)
            self.frame_summary.build((None, self.num_frames, cells * cells * dim))
            self.clip_summary = keras.layers.Bidirectional(
                keras.layers.GRU(dim // 2 or 1, return_sequences=True, dtype=policy),
                merge_mode="concat", name="clip_summary", dtype=policy)
            self.clip_summary.build((None, self.num_frames, dim))
            self.summary_projection = keras.layers.Dense(dim, name="summary_projection",
                                                         dtype=policy)
            self.summary_projection.build((None, self.num_frames, 2 * (dim // 2 or 1)))
        self.motion = None
        if self.temporal == "conv":
            kernel = (min(3, self.num_frames), min(3, cells), min(3, cells))
            self.motion = keras.layers.Conv3D(dim, kernel, padding="same", activation="relu",
                                              name="motion", dtype=policy)
            self.motion.build((None, self.num_frames, cells, cells, dim))
        self.built = True

    @property
    def num_tokens(self):
        return self.num_frames * self.spatial_grid ** 2

    def call(self, features):
        cells = self.spatial_grid
        x = ops.reshape(features, (-1, self.num_frames, cells, cells, features.shape[-1]))
        x = self.feature_norm(x)
        if self.projection is not None:
            x = self.projection(x)
        change = None
        if self.change is not None:  # from the features, before the embeddings
            zeros = ops.zeros_like(x[:, :1])
            step = x[:, 1:] - x[:, :-1]
            change = self.change(ops.concatenate([ops.concatenate([zeros, step], axis=1),
                                                  ops.concatenate([step, zeros], axis=1)], -1))
        if self.time_embedding is not None:
            x = x + ops.cast(self.time_embedding, x.dtype)[None, :, None, None, :]
        if self.cell_embedding is not None:
            x = x + ops.cast(self.cell_embedding, x.dtype)[None, None]
        if self.motion is not None:
            x = x + self.motion(x)
        if change is not None:
            x = x + change
        if self.clip_summary is not None:
            frames = ops.reshape(x, (-1, self.num_frames, cells * cells * x.shape[-1]))
            summary = self.summary_projection(self.clip_summary(self.frame_summary(frames)))
            x = x + summary[:, :, None, None, :]
        return ops.reshape(x, (-1, self.num_tokens, x.shape[-1]))

    def compute_output_shape(self, features_shape):
        return (features_shape[0], self.num_tokens, self.context_dim or features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_frames": self.num_frames,
            "spatial_grid": self.spatial_grid,
            "temporal": self.temporal,
            "context_dim": self.context_dim,
        })
        return config
