"""Soft-attention LSTM caption decoder (temporal attention over frames)."""

import keras
from keras import ops

from etenet_tf.model.decoder import CaptionDecoder

#: the `ModelConfig` fields this decoder reads
OPTIONS = ("embedding_dim", "hidden_dim", "attention_dim", "dropout")


@keras.saving.register_keras_serializable(package="etenet_tf")
class SoftAttentionLSTM(CaptionDecoder):
    """LSTM decoder that attends over memory tokens at every word.

    The memory tokens `f_1..f_N` are one pooled vector per frame (the
    paper) or, with a `SpatioTemporalContext`, one per frame and grid cell.
    With them layer-normalised, previous word `y_{t-1}` and previous state
    `(h_{t-1}, c_{t-1})` (`c` the LSTM's cell state):

        e_{t,i}   = w^T tanh(W_f f_i + W_h h_{t-1} + b)
        alpha_t   = softmax_i(e_{t,i})
        a_t       = sum_i alpha_{t,i} f_i                  (attention context)
        h_t, c_t  = LSTM([E y_{t-1}; a_t], (h_{t-1}, c_{t-1}))
        o_t       = tanh(L_h h_t + L_a a_t + E y_{t-1})
        logits_t  = W_o dropout(o_t) + b_o
        h_0, c_0  = tanh(W_h0 mean_i f_i), tanh(W_c0 mean_i f_i)

    `o_t` is the deep output layer of Show, Attend and Tell (Xu et al.
    2015): the vocabulary projection reads `embedding_dim` values rather
    than `[h; a; E y]`, which matters when it runs for every beam and word.

    `a_t` only enters through linear maps (the LSTM's input product and
    `L_a`), and `sum_i alpha_{t,i} f_i K = sum_i alpha_{t,i} (f_i K)`, so
    those maps are applied to every token once (`initial_state`) and each
    word only takes an attention-weighted sum of the results. Applied to
    `a_t` at every word instead, they cost a `[B, D] x [D, 4H]` product per
    word and, in training, a weight gradient of the whole kernel per word
    (a training step was 1.7x slower).

    `call` runs teacher-forced over a whole token sequence (the token
    length must be static); `initial_state` + `step` run one word at a
    time for greedy and beam search (the `CaptionDecoder` interface).
    Padding tokens (id 0) only occur after `<end>`: the decoder is causal,
    so they never affect earlier outputs (the padding mask is not needed),
    and the loss masks them out.

    Args:
        vocabulary_size: number of output tokens.
        embedding_dim: word embedding size (also the deep output size).
        hidden_dim: LSTM state size.
        attention_dim: size of the attention MLP.
        dropout: dropout rate on embeddings and on the deep output.
    """

    def __init__(self, vocabulary_size, embedding_dim=256, hidden_dim=512, attention_dim=256,
                 dropout=0.5, **kwargs):
        super().__init__(vocabulary_size, **kwargs)
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.attention_dim = attention_dim
        self.dropout = dropout

    def build(self, features_shape, tokens_shape=None):
        feature_dim = features_shape[-1]
        gates = 4 * self.hidden_dim
        # sublayers follow this layer's dtype policy (a per-layer mixed
        # precision policy reaches them too)
        policy = self.dtype_policy
        self.feature_norm = keras.layers.LayerNormalization(name="feature_norm", dtype=policy)
        self.feature_norm.build(features_shape)
        self.embedding = keras.layers.Embedding(
            self.vocabulary_size, self.embedding_dim, name="embedding", dtype=policy)
        self.embedding.build((None, None))
        self.feature_key = keras.layers.Dense(self.attention_dim, name="feature_key",
                                              dtype=policy)
        self.feature_key.build(features_shape)
        self.hidden_query = keras.layers.Dense(
            self.attention_dim, use_bias=False, name="hidden_query", dtype=policy)
        self.hidden_query.build((None, self.hidden_dim))
        self.attention_score = keras.layers.Dense(1, use_bias=False, name="attention_score",
                                                  dtype=policy)
        self.attention_score.build((None, None, self.attention_dim))
        self.init_h = keras.layers.Dense(self.hidden_dim, activation="tanh", name="init_h",
                                         dtype=policy)
        self.init_h.build((None, feature_dim))
        self.init_c = keras.layers.Dense(self.hidden_dim, activation="tanh", name="init_c",
                                         dtype=policy)
        self.init_c.build((None, feature_dim))
        # LSTM weights, initialised as Keras' LSTMCell does; the input kernel
        # is split into its word part and its context part, and the context
        # part is stored together with L_a (both are applied per memory token).
        self.word_kernel = self.add_weight(
            (self.embedding_dim, gates), initializer="glorot_uniform", name="word_kernel")
        self.context_kernel = self.add_weight(
            (feature_dim, gates + self.embedding_dim), initializer="glorot_uniform",
            name="context_kernel")
        self.recurrent_kernel = self.add_weight(
            (self.hidden_dim, gates), initializer="orthogonal", name="recurrent_kernel")
        self.gate_bias = self.add_weight((gates,), initializer=self._unit_forget_bias,
                                         name="gate_bias")
        self.output_hidden = keras.layers.Dense(self.embedding_dim, name="output_hidden",
                                                dtype=policy)
        self.output_hidden.build((None, self.hidden_dim))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)
        self.output_projection = keras.layers.Dense(
            self.vocabulary_size, name="output_projection",
            # logits stay float32 under mixed precision for a stable softmax
            dtype="float32" if self.dtype_policy.compute_dtype != "float32" else None,
        )
        self.output_projection.build((None, None, self.embedding_dim))
        self.built = True

    def _unit_forget_bias(self, shape, dtype=None):
        # forget gate bias 1, the others 0 (Jozefowicz et al. 2015)
        h = self.hidden_dim
        return ops.concatenate([ops.zeros((h,), dtype), ops.ones((h,), dtype),
                                ops.zeros((2 * h,), dtype)])

    def _cast(self, weight):
        # initial_state and step also run outside __call__ (beam search),
        # where Keras does not autocast variables under mixed precision
        return ops.cast(weight, self.compute_dtype)

    def initial_state(self, features, max_length=None):
        """Returns `(constants, state)` for `step`.

        `constants = (keys [B,N,A], projected [B,N,4H+E])`: the attention
        keys and each token times `[K_a | L_a]`; `state = (h, c)`. The
        state does not grow with the caption: `max_length` is not needed.
        """
        values = self.feature_norm(features)
        keys = self.feature_key(values)
        projected = ops.matmul(values, self._cast(self.context_kernel))
        mean = ops.mean(values, axis=1)
        return (keys, projected), (self.init_h(mean), self.init_c(mean))

    def _word_gates(self, embedded):
        """The word part of the LSTM input product: `[..., E] -> [..., 4H]`."""
        return ops.matmul(embedded, self._cast(self.word_kernel))

    def _advance(self, embedded, word_gates, state, memory):
        """One word: attention, the LSTM (Keras LSTMCell equations, gate order
        i, f, c, o) and the deep output `o_t` (before dropout)."""
        keys, projected = memory
        h, c = state
        scores = self.attention_score(ops.tanh(keys + self.hidden_query(h)[:, None, :]))
        alpha = ops.softmax(ops.squeeze(scores, -1), axis=-1)
        context = ops.einsum("bt,btg->bg", alpha, projected)  # a_t [K_a | L_a]
        gates = 4 * self.hidden_dim
        z = (word_gates + context[:, :gates]
             + ops.matmul(h, self._cast(self.recurrent_kernel)) + self._cast(self.gate_bias))
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        out = ops.tanh(self.output_hidden(h) + context[:, gates:] + embedded)
        return out, (h, c), alpha

    def step(self, tokens, state, index, constants, training=False):
        """One decoding step (`index` is not needed: the state carries it).

        Args:
            tokens: int `[N]`, the previous word of each sequence.
            state: `(h, c)` from `initial_state` or the previous step.
            index: the position of `tokens` (unused).
            constants: from `initial_state`.

        Returns:
            `(logits [N, V], new_state, attention [N, N_tokens])`.
        """
        embedded = self.embedding(tokens)
        out, state, alpha = self._advance(embedded, self._word_gates(embedded), state, constants)
        return self.output_projection(out), state, alpha

    def call(self, features, tokens, padding_mask=None, training=False, return_attention=False):
        """Teacher-forced logits `[B, L, V]` (and attention `[B, L, T]`)."""
        length = tokens.shape[1]
        if length is None:
            raise ValueError("the decoder needs a static token length; pad captions")
        memory, state = self.initial_state(features)
        embedded = self.dropout_layer(self.embedding(tokens), training=training)
        word_gates = self._word_gates(embedded)  # all words in one product
        outputs, alphas = [], []
        for t in range(length):
            out, state, alpha = self._advance(embedded[:, t], word_gates[:, t], state, memory)
            outputs.append(out)
            alphas.append(alpha)
        outputs = self.dropout_layer(ops.stack(outputs, axis=1), training=training)
        logits = self.output_projection(outputs)
        if return_attention:
            return logits, ops.stack(alphas, axis=1)
        return logits

    def get_config(self):
        config = super().get_config()
        config.update({
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "attention_dim": self.attention_dim,
            "dropout": self.dropout,
        })
        return config


def build(config, vocabulary_size):
    """The SA-LSTM of a `ModelConfig`."""
    return SoftAttentionLSTM(vocabulary_size, config.embedding_dim, config.hidden_dim,
                             config.attention_dim, config.dropout, name="attention_lstm")


def check(config):
    """Every option value in range suits the SA-LSTM."""
