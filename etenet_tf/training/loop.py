"""The training loop shared by every training stage, for every strategy.

Why not `model.fit`: it fails under MultiWorkerMirroredStrategy in Keras 3
(keras-team/keras#20585), it cannot give the encoder its own learning rate
without a second optimizer, and it cannot resume in the middle of an epoch.
This loop runs `strategy.run` over a distributed dataset (over the plain
one with a single replica, see `distributed_epoch`), with:

- the loss of an `Objective` (teacher forcing, self-critical, ...);
- two Adam optimizers: decoder, and (finetune) encoder at a lower rate;
- gradient accumulation: N batches per update, their gradients averaged,
  so N steps of batch b update like one step of batch N*b. The loop does
  it itself, not Keras' `gradient_accumulation_steps`: that calls
  `merge_call` inside a `cond` and fails under MirroredStrategy (even with
  one replica), and its learning rate schedules count batches where Adam's
  bias correction counts updates. Here the optimizers see updates only;
  batches between updates add their gradients to per-replica accumulators;
- exact resume: the step counter is checkpointed with the model, the
  optimizers and the gradient accumulators (so a checkpoint between two
  updates resumes exactly too); batches depend only on (seed, epoch), so a
  restarted run skips the batches it already trained on;
- a NaN/Inf loss stops training with `TrainingDivergedError` before any
  checkpoint of the diverged state is written;
- validation after every epoch (a callable, `evaluation.validation`), the
  best checkpoint chosen by a metric (CIDEr by default), and TensorBoard
  summaries;
- Ctrl-C or SIGTERM (`interrupts`) stops at a step boundary and saves a
  resume checkpoint first (single-worker runs; with several workers every
  worker would have to take part in the save, so the last periodic
  checkpoint is the resume point);
- input that cannot fill one step, or an epoch whose records run short,
  is an error (`TrainingInputError`) instead of an epoch of zero steps.
"""

import math
import os
import time

import keras
import tensorflow as tf

from etenet_tf import interrupts
from etenet_tf.data import pipeline
from etenet_tf.errors import UsageError, UserError
from etenet_tf.evaluation import validation
from etenet_tf.training import checkpoints as checkpoints_lib
from etenet_tf.training import strategy as strategy_lib


class TrainingDivergedError(UserError):
    """The loss became NaN or infinite."""


class TrainingInputError(UsageError):
    """The training data cannot give the steps the run needs (a batch larger
    than the split, records that run short, no validation scores)."""


def _schedule(learning_rate, decay_steps):
    """A constant rate, or a cosine decay to 10% over `decay_steps` updates
    (the optimizer's own iteration count drives it, so it resumes exactly)."""
    if not decay_steps:
        return learning_rate
    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.1)


class Trainer:
    """Trains a captioner with a custom loop under a tf.distribute strategy.

    Args:
        model: an `EtENetCaptioner` created under `strategy.scope()`.
        strategy: the distribution strategy.
        run: the `RunDir`; checkpoints and logs go to its stage directory.
        stage: the training stage's name.
        objective: an `objectives.Objective` (the batches and the loss).
        kind: `"features"` (from the feature cache) or `"frames"`.
        global_batch_size: videos per step over all replicas.
        decoder_learning_rate: Adam learning rate of the decoder and the
            spatio-temporal context.
        encoder_learning_rate: Adam learning rate of the encoder, or None
            to keep it frozen.
        clip_norm: global gradient norm clip (per optimizer), applied to
            the averaged gradient of an update.
        gradient_accumulation_steps: batches per optimizer update (their
            gradients averaged). Steps count batches: `train_step` is the
            step that updates, `accumulate_step` the others.
        checkpoint_every_steps: resume checkpoint interval (0: per epoch).
        decay_steps: 0 keeps the learning rates constant; N decays both
            along a cosine to 10% over N optimizer updates (the whole stage),
            so the last epochs refine instead of jumping around.
        log_every_steps: TensorBoard scalar interval.
        verbose: progress bars and messages.
    """

    def __init__(self, model, strategy, run, stage, *, objective, kind, global_batch_size,
                 decoder_learning_rate, encoder_learning_rate=None, clip_norm=5.0,
                 gradient_accumulation_steps=1, checkpoint_every_steps=0, decay_steps=0,
                 log_every_steps=10, verbose=True):
        self.model = model
        self.strategy = strategy
        self.run = run
        self.stage = stage
        self.objective = objective
        self.kind = kind
        self.global_batch_size = global_batch_size
        self.checkpoint_every_steps = checkpoint_every_steps
        self.log_every_steps = log_every_steps
        self.verbose = verbose
        self.accumulation = max(1, gradient_accumulation_steps)
        # the "decoder" optimizer trains everything after the encoder: the
        # spatio-temporal context (when the model has one) and the decoder
        self.decoder_variables = [v for part in (model.context, model.decoder)
                                  if part is not None for v in part.trainable_variables]
        self.encoder_variables = (
            list(model.encoder.trainable_variables) if encoder_learning_rate else []
        )
        with strategy.scope():
            self.decoder_optimizer = keras.optimizers.Adam(
                _schedule(decoder_learning_rate, decay_steps), global_clipnorm=clip_norm,
                name="decoder_adam",
            )
            self.decoder_optimizer.build(self.decoder_variables)
            state = {"decoder_optimizer": self.decoder_optimizer}
            self.encoder_optimizer = None
            if self.encoder_variables:
                self.encoder_optimizer = keras.optimizers.Adam(
                    _schedule(encoder_learning_rate, decay_steps), global_clipnorm=clip_norm,
                    name="encoder_adam",
                )
                self.encoder_optimizer.build(self.encoder_variables)
                state["encoder_optimizer"] = self.encoder_optimizer
            # the sum of the gradients since the last update, per replica: a
            # checkpoint holds their sum over replicas and gives each replica
            # an equal share back (SUM aggregation), so the update is the same
            self.accumulators = []
            if self.accumulation > 1:
                self.accumulators = [
                    tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                                name="gradient_accumulator",
                                synchronization=tf.VariableSynchronization.ON_READ,
                                aggregation=tf.VariableAggregation.SUM)
                    for v in self.decoder_variables + self.encoder_variables]
                state["gradient_accumulators"] = self.accumulators
            self.checkpoints = checkpoints_lib.TrainingCheckpoints(
                run, stage, model, state, strategy
            )
        # restored here, once: a stage may need resumed weights before fit()
        self.resumed_from = self.checkpoints.restore_latest()
        self.chief = strategy_lib.is_chief(strategy)
        logs = run.logs_dir(stage)
        if self.chief:
            self.train_writer = tf.summary.create_file_writer(os.path.join(logs, "train"))
            self.val_writer = tf.summary.create_file_writer(os.path.join(logs, "validation"))
        else:
            self.train_writer = self.val_writer = tf.summary.create_noop_writer()
        # train_step(batch) -> {"loss", objective metrics}: one compiled,
        # distributed step that updates the weights; with accumulation,
        # accumulate_step(batch) is the step that only adds its gradients
        self.train_step, self.accumulate_step = self._make_train_steps()

    def _make_train_steps(self):
        model, strategy, objective = self.model, self.strategy, self.objective
        n_decoder = len(self.decoder_variables)
        variables = self.decoder_variables + self.encoder_variables
        accumulators, steps = self.accumulators, self.accumulation

        def gradients(batch):
            # no-gradient work (sampling captions) stays out of the tape
            batch = objective.before_step(model, batch, self.checkpoints.step)
            with tf.GradientTape() as tape:
                per_example, logs = objective(model, batch, training=True)
                loss = tf.nn.compute_average_loss(
                    per_example, global_batch_size=self.global_batch_size
                )
            # dense gradients: the embedding's arrives as IndexedSlices with a
            # row per token, and the global clip norm of those counts a word
            # seen twice as two rows (measured 0.4% off the true norm)
            return loss, logs, [None if g is None else tf.convert_to_tensor(g)
                                for g in tape.gradient(loss, variables)]

        def update(batch):
            loss, logs, grads = gradients(batch)
            if accumulators:  # the mean gradient of the update's batches
                grads = [None if g is None else (a + g) / steps
                         for a, g in zip(accumulators, grads)]
                for a in accumulators:
                    a.assign(tf.zeros_like(a))
            self.decoder_optimizer.apply(grads[:n_decoder], self.decoder_variables)
            if self.encoder_optimizer is not None:
                self.encoder_optimizer.apply(grads[n_decoder:], self.encoder_variables)
            return loss, logs

        def accumulate(batch):
            loss, logs, grads = gradients(batch)
            for a, g in zip(accumulators, grads):
                if g is not None:
                    a.assign_add(g)
            return loss, logs

        def compiled(replica_fn):
            @tf.function
            def step(batch):
                loss, logs = strategy.run(replica_fn, args=(batch,))
                out = {"loss": strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)}
                for name, value in logs.items():
                    out[name] = strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                return out

            return step

        return compiled(update), (compiled(accumulate) if accumulators else None)

    def distributed_epoch(self, make_dataset, epoch, steps, skip=0):
        """The batches of one epoch after the first `skip`, for `train_step`."""
        def dataset_fn(context):
            per_replica = context.get_per_replica_batch_size(self.global_batch_size)
            replicas_here = self.strategy.num_replicas_in_sync // context.num_input_pipelines
            ds = make_dataset(per_replica, epoch, context)
            # every pipeline yields the same number of batches, or workers hang
            return ds.take(steps * replicas_here).skip(skip * replicas_here)

        if self.strategy.num_replicas_in_sync == 1 and strategy_lib.num_workers(self.strategy) == 1:
            # one replica: the plain dataset. A distributed iterator, freed at
            # the epoch's end, waits for the autotuning thread of its device
            # prefetch to wake up (seen: 6-36 s per epoch with both cores idle)
            return dataset_fn(tf.distribute.InputContext())
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def fit(self, make_dataset, *, num_videos, epochs, validate, best_metric="CIDEr"):
        """Trains until `epochs` are done (from the checkpoint restored at init).

        Args:
            make_dataset: callable(batch_size, epoch, input_context) -> a
                `pipeline.train_dataset`.
            num_videos: training videos (for steps per epoch).
            epochs: total epochs of this stage.
            validate: callable(epoch) -> (scores dict, samples) run after
                each epoch; samples are (id, caption, references, picture).
            best_metric: key of the scores that picks the best checkpoint.

        Returns:
            The best record (dict).
        """
        workers = strategy_lib.num_workers(self.strategy)
        per_worker = num_videos // workers
        steps = pipeline.steps_per_epoch(per_worker, self.global_batch_size // workers)
        if steps < 1:
            raise TrainingInputError(
                f"{num_videos} training videos cannot fill one batch of --batch_size="
                f"{self.global_batch_size}"
                f"{f' over {workers} workers' if workers > 1 else ''}, so an epoch would train "
                f"zero steps; lower --batch_size to at most {max(per_worker, 1) * workers}")
        step = int(self.checkpoints.step.numpy())
        if self.resumed_from and self.verbose:
            print(f"resumed from {self.resumed_from} at step {step}", flush=True)
        if self.accumulation > 1 and self.verbose and self.chief:
            print(f"{self.accumulation} batches of {self.global_batch_size} per update "
                  f"({self.accumulation * self.global_batch_size} videos)", flush=True)
        left = steps * epochs % self.accumulation
        if left and self.verbose and self.chief:
            print(f"note: {steps} steps x {epochs} epochs is not a multiple of "
                  f"--gradient_accumulation_steps={self.accumulation}: the gradients of the "
                  f"stage's last {left} batches are never applied", flush=True)
        best = self.checkpoints.best()
        self._saved_step = step if self.resumed_from else None
        try:
            for epoch in range(int(self.checkpoints.validated_epochs.numpy()), epochs):
                skip = min(max(step - epoch * steps, 0), steps)
                start = time.time()
                if skip < steps:
                    step = self._train_epoch(make_dataset, epoch, epochs, steps, skip, step)
                scores, samples = validate(epoch)
                value = scores.get(best_metric)
                with interrupts.deferred():  # the epoch's results and its checkpoint together
                    self._log_validation(step, time.time() - start, scores, samples)
                    if value is not None and (best is None or _better(scores, value, best)):
                        best = {"metric": best_metric, "value": value, "epoch": epoch + 1,
                                "step": step, "scores": scores}
                        self.checkpoints.save_best(best)
                    self.checkpoints.validated_epochs.assign(epoch + 1)
                    self._save()
                if best is None:
                    raise TrainingInputError(
                        f"validation gave no {best_metric} score (no validation video with a "
                        "reference caption?), so no best checkpoint can be chosen; check the "
                        "val split of --records_dir and --best_metric")
                if self.verbose and self.chief:
                    shown = " ".join(f"{k}={v:.4f}" for k, v in scores.items() if v is not None)
                    print(f"epoch {epoch + 1}/{epochs}: validation {shown}"
                          f"{'  (best)' if best and best['epoch'] == epoch + 1 else ''}",
                          flush=True)
        except KeyboardInterrupt as e:
            self._save_on_interrupt(e)
            raise
        if best is None:
            raise TrainingInputError("training ran no epoch; raise the number of epochs")
        # non-chief workers read the chief's best.json after this returns
        strategy_lib.barrier(self.strategy)
        return best

    def _save(self):
        path = self.checkpoints.save()
        self._saved_step = int(self.checkpoints.step.numpy())
        return path

    def _save_on_interrupt(self, error):
        """Saves a resume checkpoint at the step reached (Ctrl-C, SIGTERM).

        The step loop only lets an interrupt through between steps, so the
        model, optimizers and step counter agree. With several workers a
        save needs all of them, so the last periodic checkpoint is kept.
        """
        step = int(self.checkpoints.step.numpy())
        if strategy_lib.num_workers(self.strategy) > 1:
            detail = ("several workers: resumes from the last periodic checkpoint "
                      f"({self.checkpoints.manager.latest_checkpoint or 'none yet'})")
        elif step == 0 or step == self._saved_step:
            detail = f"at step {step}, already saved"
        else:
            with interrupts.deferred():
                path = self._save()
            detail = f"saved the resume checkpoint {path} at step {step}"
        if not getattr(error, "detail", None):
            error.detail = detail

    def _train_epoch(self, make_dataset, epoch, epochs, steps, skip, step):
        """Runs the steps of `epoch` after the first `skip`; returns the step."""
        data = self.distributed_epoch(make_dataset, epoch, steps, skip)
        if self.verbose and self.chief:
            print(f"epoch {epoch + 1}/{epochs}", flush=True)
        bar = self._bar = keras.utils.Progbar(
            steps, verbose=1 if self.verbose and self.chief else 0,
            stateful_metrics=["loss", *self.objective.metrics])
        bar.update(skip)
        batches = iter(data)
        try:
            while True:
                # fetching a batch, its step and the bookkeeping are one unit:
                # Ctrl-C/SIGTERM waits for it, so no exception is raised inside
                # TensorFlow's iterator code (a SIGTERM raised while
                # `get_next` ran was followed by a segfault in it, once in CI)
                with interrupts.deferred():
                    batch = next(batches, None)
                    if batch is None:
                        break
                    step = self._step(batch, step, epoch, steps)
        except BaseException:
            if self.verbose and self.chief:
                print(flush=True)  # end the progress bar's line before any error line
            raise
        if step < (epoch + 1) * steps:
            raise TrainingInputError(
                f"epoch {epoch + 1} ended after {step - epoch * steps} of {steps} steps: the "
                f"training records hold fewer videos than dataset.json says; re-run "
                "--stage=prepare")
        return step

    def _step(self, batch, step, epoch, steps):
        # batch `step + 1` of the stage; every N-th one updates the weights
        updates = (step + 1) % self.accumulation == 0
        run_step = self.train_step if updates else self.accumulate_step
        logs = {name: float(value) for name, value in run_step(batch).items()}
        loss = logs["loss"]
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"loss became {loss} at step {step + 1} (epoch {epoch + 1}); the last "
                f"good checkpoint is kept in {self.checkpoints.manager.directory}. "
                "Lower the learning rate and re-run to resume from it"
            )
        step += 1
        self.checkpoints.step.assign(step)
        self._bar.update(step - epoch * steps, list(logs.items()))
        if step % self.log_every_steps == 0 or step == (epoch + 1) * steps:  # (and epoch ends)
            with self.train_writer.as_default(step=step):
                for name, value in logs.items():
                    tf.summary.scalar(name, value)
                # (a mirrored variable has no float(): read it as a tensor)
                tf.summary.scalar("learning_rate/decoder",
                                  tf.convert_to_tensor(self.decoder_optimizer.learning_rate))
                if self.encoder_optimizer is not None:
                    tf.summary.scalar("learning_rate/encoder",
                                      tf.convert_to_tensor(self.encoder_optimizer.learning_rate))
        # the epoch's last step is saved after its validation instead
        if (self.checkpoint_every_steps and step % self.checkpoint_every_steps == 0
                and step < (epoch + 1) * steps):
            self._save()
        return step

    def _log_validation(self, step, seconds, scores, samples):
        validation.write_summaries(self.val_writer, step, seconds, scores, samples)
        self.train_writer.flush()
        self.val_writer.flush()


def _better(scores, value, best):
    """Higher `best_metric`; on a tie (attribute accuracy saturates at 1.0),
    higher CIDEr."""
    if value != best["value"]:
        return value > best["value"]
    return scores.get("CIDEr", 0.0) > best.get("scores", {}).get("CIDEr", 0.0)
