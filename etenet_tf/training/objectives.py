"""Training objectives: what a training step minimises.

The training loop (`loop.Trainer`) owns optimizers, distribution,
checkpoints and logging; an objective owns the batch format it trains on
and the loss. `TeacherForcing` is the cross-entropy of pretrain and
finetune; self-critical sequence training (`SelfCritical`, the scst stage)
is another objective on the same loop: it samples with the decoder-free
`RandomSampler` and is rewarded by the in-graph CIDEr-D.
"""

import tensorflow as tf

from etenet_tf.data import pipeline
from etenet_tf.generation import GreedySampler, RandomSampler, generate
from etenet_tf.model.losses import CaptionLoss
from etenet_tf.text.vocabulary import END_ID, PAD_ID, START_ID


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

    def before_step(self, model, batch, step):
        """Work on one replica's batch that needs no gradient, done outside
        the gradient tape (e.g. sampling captions); returns the batch the
        loss reads. `step` is the loop's step counter (for seeds)."""
        return batch

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


class SelfCritical(Objective):
    """Self-critical sequence training (Rennie et al., CVPR 2017) on CIDEr-D.

    For each clip, K captions are drawn from the model's distribution (in
    the graph, seeded by the step so a resumed run draws the same ones) and
    scored against the clip's references by `CiderD`. The loss is

        -(reward_k - baseline_k) * log p(caption_k)

    averaged over the K captions, `log p` summed over the caption's words
    and its `<end>` (a teacher-forced pass, so it has a gradient; padding
    after `<end>` carries none). The baseline is the mean reward of the
    clip's other K - 1 captions (`"mean"`, the default: practitioners find
    it better than the greedy caption and it costs nothing more) or the
    reward of the clip's greedy caption (`"greedy"`, the original paper).

    Args:
        cider: a `CiderD` (the reward).
        num_samples: captions drawn per clip (K).
        baseline: `"mean"` or `"greedy"`.
        max_length: most tokens per drawn caption, `<end>` included.
        seed: base seed of the draws.
        sampler: the rule drawing the K captions, a `RowSampler` with
            `num_samples=K` (None: `RandomSampler(K)`; `TopKSampler` or
            `TopPSampler` draw from the likely words only).
    """

    metrics = ("reward", "baseline", "entropy")

    def __init__(self, cider, *, num_samples=5, baseline="mean", max_length=20, seed=0,
                 sampler=None):
        if baseline not in ("mean", "greedy"):
            raise ValueError("baseline must be 'mean' or 'greedy'")
        if baseline == "mean" and num_samples < 2:
            raise ValueError("the mean baseline needs at least 2 samples per clip")
        self.cider = cider
        self.num_samples = num_samples
        self.baseline = baseline
        self.max_length = max_length
        self.seed = seed
        self.sampler = RandomSampler(num_samples) if sampler is None else sampler
        if self.sampler.rows_per_input != num_samples:
            raise ValueError(f"the sampler draws {self.sampler.rows_per_input} captions per "
                             f"clip, not num_samples={num_samples}")

    def dataset(self, files, kind, tokenizer, batch_size, *, epoch, seed, image_size,
                input_context):
        return pipeline.references_dataset(files, kind, tokenizer, batch_size, epoch=epoch,
                                           seed=seed, image_size=image_size,
                                           input_context=input_context)

    @staticmethod
    def _features(model, batch):
        return batch["features"] if "features" in batch else model.encode(batch["frames"])

    def before_step(self, model, batch, step):
        features = self._features(model, batch)
        k = self.num_samples
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.stack([tf.cast(self.seed, tf.int32),
                         tf.cast(step, tf.int32) * 1009 + tf.cast(replica, tf.int32)])
        drawn = generate(model, features, self.sampler, max_length=self.max_length,
                         seed=seed).ids                                   # [B, K, L]
        samples = tf.reshape(drawn, [-1, self.max_length])
        references = batch["references"]
        rewards = self.cider(samples, tf.repeat(references, k, axis=0))
        rewards = tf.reshape(rewards, [-1, k])                           # [B, K]
        if self.baseline == "mean":
            baseline = (tf.reduce_sum(rewards, 1, keepdims=True) - rewards) / (k - 1)
        else:
            greedy = generate(model, features, GreedySampler(), max_length=self.max_length)
            greedy_ids = greedy.ids[:, 0]
            baseline = tf.repeat(self.cider(greedy_ids, references)[:, None], k, axis=1)
        return dict(batch, samples=samples, rewards=rewards, baseline=baseline)

    def __call__(self, model, batch, training=True):
        k, samples = self.num_samples, batch["samples"]                  # [B*K, L]
        memory = tf.repeat(model.memory(self._features(model, batch)), k, axis=0)
        tokens = tf.concat([tf.fill([tf.shape(samples)[0], 1], START_ID),
                            samples[:, :-1]], axis=1)
        logits = tf.cast(model.decode(memory, tokens, training=training), tf.float32)
        log_probs = tf.nn.log_softmax(logits)
        # words and the first <end>; nothing after it carries a gradient
        ended_before = tf.cumsum(tf.cast(tf.equal(samples, END_ID), tf.int32), axis=1,
                                 exclusive=True) > 0
        mask = tf.cast(tf.logical_and(tf.logical_not(ended_before),
                                      tf.not_equal(samples, PAD_ID)), tf.float32)
        picked = tf.gather(log_probs, samples, batch_dims=2) * mask
        caption_log_prob = tf.reshape(tf.reduce_sum(picked, axis=1), [-1, k])
        advantage = tf.stop_gradient(batch["rewards"] - batch["baseline"])
        per_clip = -tf.reduce_mean(advantage * caption_log_prob, axis=1)
        entropy = -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)
        mean_entropy = tf.reduce_sum(entropy * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
        return per_clip, {"reward": tf.reduce_mean(batch["rewards"]),
                          "baseline": tf.reduce_mean(batch["baseline"]),
                          "entropy": mean_entropy}
