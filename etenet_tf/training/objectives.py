"""Training objectives: what a training step minimises.

The training loop (`loop.Trainer`) owns optimizers, distribution,
checkpoints and logging; an objective owns the batch format it trains on
and the loss. `TeacherForcing` is the cross-entropy of pretrain and
finetune; self-critical training (`SelfCritical`) is another objective,
not another loop.
"""

from etenet_tf.data import pipeline
from etenet_tf.model.losses import CaptionLoss


class Objective:
    """Base class: a loss for the custom training loop.

    Subclasses implement `dataset` (the batches they need) and `__call__`
    (per-example losses and scalars to log), and may override `metrics`
    (names of those scalars, for the progress bar and TensorBoard).
    """

    #: scalars `__call__` returns besides the loss (mean over the batch)
    metrics = ()

    def dataset(self, files, kind, tokenizer, batch_size, *, epoch, seed, image_size,
                input_context):
        """One epoch of training batches (see `pipeline.train_dataset`)."""
        raise NotImplementedError

    def __call__(self, model, batch, training=True):
        """Returns `(per_example_loss [B], {name: scalar})` for one replica's
        batch; the loop averages the loss over the global batch."""
        raise NotImplementedError


class TeacherForcing(Objective):
    """Per-caption token cross-entropy of the reference caption given the
    reference prefix (`CaptionLoss`), one reference per clip and epoch.

    Args:
        label_smoothing: see `CaptionLoss`.
    """

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = label_smoothing
        self.loss = CaptionLoss(label_smoothing)

    def dataset(self, files, kind, tokenizer, batch_size, *, epoch, seed, image_size,
                input_context):
        return pipeline.train_dataset(files, kind, tokenizer, batch_size, epoch=epoch,
                                      seed=seed, image_size=image_size,
                                      input_context=input_context)

    def __call__(self, model, batch, training=True):
        x, y = batch
        logits = model(x, training=training)
        return self.loss.call(y, logits), {}
