"""Transformer caption decoder: causal self-attention over the words so far,
cross-attention over the memory tokens, with a key/value cache for decoding.

Keras core layers (Dense, Embedding, LayerNormalization, Dropout) and
`keras.ops`, not keras-hub's `TransformerDecoder` (see docs/decoders.md):
its cached attention writes the cache with `ops.slice_update`, which on
TensorFlow is XLA's `XlaDynamicUpdateSlice` (not a core op of a serving
graph), and it cannot return attention weights while it caches, which the
attention pictures need. Here the cache is written with a select at the
step's position (`where(t == index, k, cache)`: exact, one pass over the
cache, a core op).
"""

import math

import keras
from keras import ops

from etenet_tf.errors import UsageError
from etenet_tf.model.decoder import CaptionDecoder

#: the `ModelConfig` fields this decoder reads
OPTIONS = ("embedding_dim", "num_layers", "num_heads", "feedforward_dim", "tie_embeddings",
           "dropout")
# the layers of each block, attributes `layer{i}_{part}` of the decoder
_PARTS = ("self_norm", "self_qkv", "self_out", "cross_norm", "cross_q", "cross_kv", "cross_out",
          "ffn_norm", "ffn_hidden", "ffn_out")

_MASKED = -1e9  # score of a key a query must not see (softmax weight exactly 0)


def sine_positions(positions, dim):
    """Sinusoidal position encodings (Vaswani et al. 2017) `[..., dim]` of
    integer positions `[...]`: no length limit, no weights."""
    half = dim // 2
    rates = ops.exp(ops.arange(half, dtype="float32") * (-math.log(10000.0) / max(half, 1)))
    angles = ops.cast(positions, "float32")[..., None] * rates
    encoding = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)
    if dim % 2:
        encoding = ops.pad(encoding, [(0, 0)] * (len(encoding.shape) - 1) + [(0, 1)])
    return encoding


@keras.saving.register_keras_serializable(package="etenet_tf")
class TransformerCaptionDecoder(CaptionDecoder):
    """Pre-norm Transformer decoder (GPT-2 / keras-hub `normalize_first`):

        x_0    = dropout(E y * sqrt(d) + P(positions))
        x      = x + dropout(SelfAttention_causal(LN(x)))
        x      = x + dropout(CrossAttention(LN(x), M))      M = LN_m(memory) W_m
        x      = x + dropout(FFN(LN(x)))                    (per layer)
        logits = LN(x) E^T + b   (tied) or   LN(x) W_o + b_o   (untied)

    `initial_state` projects the memory and computes every layer's
    cross-attention keys and values once (the per-clip constants); the
    state is the self-attention key/value cache, a `(keys, values)` pair of
    `[R, heads, max_length, head_dim]` per layer, written at `index` by each
    `step`, so a step computes only the new token. Attention weights returned are the last layer's
    cross-attention, averaged over heads.

    Args:
        vocabulary_size: number of output tokens.
        model_dim: token size `d` (also the word embedding size).
        num_layers: decoder layers.
        num_heads: attention heads (must divide `model_dim`).
        feedforward_dim: hidden size of each layer's feed-forward network.
        dropout: rate on the embeddings and each residual branch.
        tie_embeddings: the output projection is the word embedding's
            transpose (plus a bias).
    """

    def __init__(self, vocabulary_size, model_dim=256, num_layers=2, num_heads=4,
                 feedforward_dim=1024, dropout=0.1, tie_embeddings=True, **kwargs):
        super().__init__(vocabulary_size, **kwargs)
        if model_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide model_dim={model_dim}")
        self.model_dim = model_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.feedforward_dim = feedforward_dim
        self.dropout = dropout
        self.tie_embeddings = tie_embeddings

    @property
    def head_dim(self):
        return self.model_dim // self.num_heads

    def build(self, memory_shape, tokens_shape=None, padding_mask_shape=None):
        d, policy = self.model_dim, self.dtype_policy

        def dense(units, name, activation=None, input_dim=d):
            layer = keras.layers.Dense(units, activation=activation, name=name, dtype=policy)
            layer.build((None, None, input_dim))
            return layer

        def norm(name):
            layer = keras.layers.LayerNormalization(epsilon=1e-5, name=name, dtype=policy)
            layer.build((None, None, d))
            return layer

        self.memory_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="memory_norm",
                                                           dtype=policy)
        self.memory_norm.build(memory_shape)
        self.memory_projection = dense(d, "memory_projection", input_dim=memory_shape[-1])
        self.embedding = keras.layers.Embedding(self.vocabulary_size, d, name="embedding",
                                                dtype=policy)
        self.embedding.build((None, None))
        # each block's layers are attributes (`layer{i}_{part}`): a list of
        # dicts is tracked by Keras but not by `tf.train.Checkpoint`, whose
        # resume and best checkpoints then left the blocks out
        for i in range(self.num_layers):
            block = {
                "self_norm": norm(f"layer{i}_self_norm"),
                "self_qkv": dense(3 * d, f"layer{i}_self_qkv"),
                "self_out": dense(d, f"layer{i}_self_out"),
                "cross_norm": norm(f"layer{i}_cross_norm"),
                "cross_q": dense(d, f"layer{i}_cross_q"),
                "cross_kv": dense(2 * d, f"layer{i}_cross_kv"),
                "cross_out": dense(d, f"layer{i}_cross_out"),
                "ffn_norm": norm(f"layer{i}_ffn_norm"),
                "ffn_hidden": dense(self.feedforward_dim, f"layer{i}_ffn_hidden", "gelu"),
                "ffn_out": dense(d, f"layer{i}_ffn_out", input_dim=self.feedforward_dim),
            }
            for part in _PARTS:
                setattr(self, f"layer{i}_{part}", block[part])
        self.final_norm = norm("final_norm")
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)
        # logits stay float32 under mixed precision for a stable softmax
        if self.tie_embeddings:
            self.output_bias = self.add_weight((self.vocabulary_size,), initializer="zeros",
                                               name="output_bias")
        else:
            self.output_projection = keras.layers.Dense(
                self.vocabulary_size, name="output_projection",
                dtype="float32" if self.dtype_policy.compute_dtype != "float32" else None)
            self.output_projection.build((None, None, d))
        self.built = True

    # -- pieces ----------------------------------------------------------------

    @property
    def blocks(self):
        """Each block's layers, `[{part: layer}]` (not tracked twice)."""
        return [{part: getattr(self, f"layer{i}_{part}") for part in _PARTS}
                for i in range(self.num_layers)]

    def _heads(self, x):
        """`[B, L, d] -> [B, heads, L, head_dim]`."""
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def _attend(self, query, keys, values, allowed):
        """Multi-head attention: query `[B, h, Q, k]`, keys/values `[B, h, K, k]`,
        `allowed` bool broadcastable to `[B, h, Q, K]` (None: all). Returns
        `(output [B, Q, d], weights [B, h, Q, K])`. Batched matmuls: in this
        layout a decoding step's attention over its cache needs no transpose
        of the cache."""
        scores = ops.matmul(query, ops.swapaxes(keys, -1, -2)) / math.sqrt(self.head_dim)
        if allowed is not None:
            scores = ops.where(allowed, scores, ops.cast(_MASKED, scores.dtype))
        weights = ops.softmax(scores, axis=-1)
        out = ops.transpose(ops.matmul(weights, values), (0, 2, 1, 3))
        shape = ops.shape(out)
        return ops.reshape(out, (shape[0], shape[1], self.model_dim)), weights

    def _embed(self, tokens, positions, training):
        x = self.embedding(tokens) * ops.cast(math.sqrt(self.model_dim), self.compute_dtype)
        x = x + ops.cast(sine_positions(positions, self.model_dim), self.compute_dtype)
        return self.dropout_layer(x, training=training)

    def _cross_constants(self, memory):
        """Every layer's cross-attention keys and values of the memory."""
        projected = self.memory_projection(self.memory_norm(memory))
        keys, values = [], []
        for block in self.blocks:
            k, v = ops.split(block["cross_kv"](projected), 2, axis=-1)
            keys.append(self._heads(k))
            values.append(self._heads(v))
        return tuple(keys), tuple(values)

    def _self_qkv(self, block, x):
        """The self-attention queries, keys and values of `x` `[B, L, d]`."""
        q, k, v = ops.split(block["self_qkv"](block["self_norm"](x)), 3, axis=-1)
        return self._heads(q), self._heads(k), self._heads(v)

    def _layer(self, block, x, query, keys, values, allowed, cross_k, cross_v, training):
        """The rest of one layer, given its self-attention inputs. Returns
        `(x, cross-attention weights)`."""
        out, _ = self._attend(query, keys, values, allowed)
        x = x + self.dropout_layer(block["self_out"](out), training=training)
        q = self._heads(block["cross_q"](block["cross_norm"](x)))
        out, cross = self._attend(q, cross_k, cross_v, None)
        x = x + self.dropout_layer(block["cross_out"](out), training=training)
        hidden = block["ffn_hidden"](block["ffn_norm"](x))
        x = x + self.dropout_layer(block["ffn_out"](hidden), training=training)
        return x, cross

    def _logits(self, x):
        x = self.final_norm(x)
        if self.tie_embeddings:
            # (inside `call` Keras autocasts variables to the compute dtype)
            table = ops.cast(self.embedding.embeddings, "float32")
            return (ops.matmul(ops.cast(x, "float32"), ops.transpose(table))
                    + ops.cast(self.output_bias, "float32"))
        return self.output_projection(x)

    # -- the CaptionDecoder interface -----------------------------------------

    def call(self, memory, tokens, padding_mask=None, training=False, return_attention=False):
        length = ops.shape(tokens)[1]
        positions = ops.arange(length)
        x = self._embed(tokens, positions[None, :], training)
        allowed = positions[None, None, :, None] >= positions[None, None, None, :]  # q >= key
        if padding_mask is not None:
            allowed = ops.logical_and(allowed, ops.cast(padding_mask, "bool")[:, None, None, :])
        cross_keys, cross_values = self._cross_constants(memory)
        for i, block in enumerate(self.blocks):
            query, keys, values = self._self_qkv(block, x)
            x, cross = self._layer(block, x, query, keys, values, allowed, cross_keys[i],
                                   cross_values[i], training)
        logits = self._logits(x)
        if return_attention:
            return logits, ops.cast(ops.mean(cross, axis=1), "float32")
        return logits

    def initial_state(self, memory, max_length):
        """`(constants, cache)`: constants are every layer's cross-attention
        keys and values; the cache holds zeros for `max_length` words, a
        `(keys, values)` pair of `[R, heads, max_length, head_dim]` per
        layer (separate tensors: a step writes and the beam reorders each
        without stacking or slicing a larger one)."""
        if max_length is None:
            raise ValueError("the Transformer decoder's cache needs max_length")
        zeros = ops.zeros((ops.shape(memory)[0], self.num_heads, max_length, self.head_dim),
                          self.compute_dtype)
        return self._cross_constants(memory), tuple((zeros, zeros)
                                                    for _ in range(self.num_layers))

    def step(self, tokens, state, index, constants, training=False):
        cross_keys, cross_values = constants
        max_length = ops.shape(state[0][0])[2]
        x = self._embed(tokens[:, None], ops.reshape(index, (1, 1)), training)  # [R, 1, d]
        # write position `index` of every layer's cache with the new token's
        # keys and values; attend to positions <= index
        positions = ops.arange(max_length)
        at = (positions == index)[None, None, :, None]
        allowed = (positions <= index)[None, None, None, :]
        cache = []
        for i, block in enumerate(self.blocks):
            query, k, v = self._self_qkv(block, x)
            keys, values = (ops.where(at, new, old) for new, old in zip((k, v), state[i]))
            cache.append((keys, values))
            x, cross = self._layer(block, x, query, keys, values, allowed, cross_keys[i],
                                   cross_values[i], training)
        logits = self._logits(x)[:, 0]
        return logits, tuple(cache), ops.cast(ops.mean(cross, axis=1)[:, 0], "float32")

    def get_config(self):
        config = super().get_config()
        config.update({
            "model_dim": self.model_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "feedforward_dim": self.feedforward_dim,
            "dropout": self.dropout,
            "tie_embeddings": self.tie_embeddings,
        })
        return config


def build(config, vocabulary_size):
    """The Transformer decoder of a `ModelConfig` (model size `embedding_dim`)."""
    return TransformerCaptionDecoder(
        vocabulary_size, config.embedding_dim, config.num_layers, config.num_heads,
        config.feedforward_dim, config.dropout, config.tie_embeddings,
        name="transformer_decoder")


def check(config):
    """Raises `UsageError` when the head count does not divide the model size."""
    if config.embedding_dim % config.num_heads:
        raise UsageError(f"--num_heads={config.num_heads} does not divide --embedding_dim="
                         f"{config.embedding_dim} (the Transformer's model size): choose a "
                         "head count that divides it")
