"""Masked caption cross-entropy with optional label smoothing."""

import keras
from keras import ops

from etenet_tf.text.vocabulary import PAD_ID


@keras.saving.register_keras_serializable(package="etenet_tf")
class CaptionLoss(keras.losses.Loss):
    """Per-caption mean token cross-entropy, ignoring `<pad>` targets.

    Returns one value per caption (`[batch]`): the mean over its real
    tokens, so the loss does not depend on how much padding a batch has.
    With label smoothing `eps` the target is `(1 - eps)` on the true word
    plus `eps` spread uniformly over the vocabulary.

    Args:
        label_smoothing: `eps` in [0, 1).
    """

    def __init__(self, label_smoothing=0.0, name="caption_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError("label_smoothing must be in [0, 1)")
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        log_probs = ops.log_softmax(logits, axis=-1)
        targets = ops.cast(y_true, "int32")
        nll = -ops.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        if self.label_smoothing:
            smooth = -ops.mean(log_probs, axis=-1)
            nll = (1.0 - self.label_smoothing) * nll + self.label_smoothing * smooth
        mask = ops.cast(ops.not_equal(targets, PAD_ID), "float32")
        return ops.sum(nll * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"label_smoothing": self.label_smoothing})
        return config
