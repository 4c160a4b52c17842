"""Soft-attention LSTM caption decoder (temporal attention over frames)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="etenet_tf")
class SoftAttentionLSTM(keras.layers.Layer):
    """LSTM decoder that attends over per-frame features at every word.

    With frame features `f_1..f_T` (layer-normalised), previous word
    `y_{t-1}` and previous state `(h_{t-1}, m_{t-1})`:

        e_{t,i}   = w^T tanh(W_f f_i + W_h h_{t-1} + b)
        alpha_t   = softmax_i(e_{t,i})
        c_t       = sum_i alpha_{t,i} f_i
        h_t, m_t  = LSTM([E y_{t-1}; c_t], (h_{t-1}, m_{t-1}))
        logits_t  = W_o dropout([h_t; c_t; E y_{t-1}]) + b_o
        h_0, m_0  = tanh(W_h0 mean_i f_i), tanh(W_m0 mean_i f_i)

    `call` runs teacher-forced over a whole token sequence (the token
    length must be static); `initial_state` + `step` run one word at a
    time for greedy and beam search. Padding tokens (id 0) only occur
    after `<end>`: the decoder is causal, so they never affect earlier
    outputs, and the loss masks them out.

    Args:
        vocabulary_size: number of output tokens.
        embedding_dim: word embedding size.
        hidden_dim: LSTM state size.
        attention_dim: size of the attention MLP.
        dropout: dropout rate on embeddings and on the output projection.
    """

    def __init__(self, vocabulary_size, embedding_dim=256, hidden_dim=512, attention_dim=256,
                 dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.attention_dim = attention_dim
        self.dropout = dropout

    def build(self, features_shape, tokens_shape=None):
        feature_dim = features_shape[-1]
        self.feature_norm = keras.layers.LayerNormalization(name="feature_norm")
        self.feature_norm.build(features_shape)
        self.embedding = keras.layers.Embedding(
            self.vocabulary_size, self.embedding_dim, name="embedding"
        )
        self.embedding.build((None, None))
        self.feature_key = keras.layers.Dense(self.attention_dim, name="feature_key")
        self.feature_key.build(features_shape)
        self.hidden_query = keras.layers.Dense(
            self.attention_dim, use_bias=False, name="hidden_query"
        )
        self.hidden_query.build((None, self.hidden_dim))
        self.attention_score = keras.layers.Dense(1, use_bias=False, name="attention_score")
        self.attention_score.build((None, None, self.attention_dim))
        self.init_h = keras.layers.Dense(self.hidden_dim, activation="tanh", name="init_h")
        self.init_h.build((None, feature_dim))
        self.init_c = keras.layers.Dense(self.hidden_dim, activation="tanh", name="init_c")
        self.init_c.build((None, feature_dim))
        self.cell = keras.layers.LSTMCell(self.hidden_dim, name="lstm_cell")
        self.cell.build((None, self.embedding_dim + feature_dim))
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        self.output_projection = keras.layers.Dense(
            self.vocabulary_size, name="output_projection",
            # logits stay float32 under mixed precision for a stable softmax
            dtype="float32" if self.dtype_policy.compute_dtype != "float32" else None,
        )
        self.output_projection.build(
            (None, None, self.hidden_dim + feature_dim + self.embedding_dim)
        )
        self.built = True

    def initial_state(self, features):
        """Returns `(memory, state)` for `step`.

        `memory = (values [B,T,D], keys [B,T,A])`, `state = (h, m)`.
        """
        values = self.feature_norm(features)
        keys = self.feature_key(values)
        mean = ops.mean(values, axis=1)
        return (values, keys), (self.init_h(mean), self.init_c(mean))

    def _attend(self, h, memory):
        values, keys = memory
        scores = self.attention_score(ops.tanh(keys + self.hidden_query(h)[:, None, :]))
        alpha = ops.softmax(ops.squeeze(scores, -1), axis=-1)
        context = ops.sum(alpha[:, :, None] * values, axis=1)
        return context, alpha

    def _advance(self, embedded, state, memory, training):
        context, alpha = self._attend(state[0], memory)
        h, (h, m) = self.cell(ops.concatenate([embedded, context], -1), list(state),
                              training=training)
        return ops.concatenate([h, context, embedded], -1), (h, m), alpha

    def step(self, tokens, state, memory, training=False):
        """One decoding step.

        Args:
            tokens: int `[N]`, the previous word of each sequence.
            state: `(h, m)` from `initial_state` or the previous step.
            memory: from `initial_state`.

        Returns:
            `(logits [N, V], new_state, attention [N, T])`.
        """
        embedded = self.embedding(tokens)
        out, state, alpha = self._advance(embedded, state, memory, training)
        return self.output_projection(out), state, alpha

    def call(self, features, tokens, training=False, return_attention=False):
        """Teacher-forced logits `[B, L, V]` (and attention `[B, L, T]`)."""
        length = tokens.shape[1]
        if length is None:
            raise ValueError("the decoder needs a static token length; pad captions")
        memory, state = self.initial_state(features)
        embedded = self.dropout_layer(self.embedding(tokens), training=training)
        outputs, alphas = [], []
        for t in range(length):
            out, state, alpha = self._advance(embedded[:, t], state, memory, training)
            outputs.append(out)
            alphas.append(alpha)
        outputs = self.dropout_layer(ops.stack(outputs, axis=1), training=training)
        logits = self.output_projection(outputs)
        if return_attention:
            return logits, ops.stack(alphas, axis=1)
        return logits

    def compute_output_shape(self, features_shape, tokens_shape):
        return tuple(tokens_shape) + (self.vocabulary_size,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "attention_dim": self.attention_dim,
            "dropout": self.dropout,
        })
        return config
