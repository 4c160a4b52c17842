"""How the training stages run: `TrainingConfig`."""

import dataclasses

from etenet_tf.errors import UsageError
from etenet_tf.generation.samplers import DRAWN_RULES
from etenet_tf.model.remat import REMAT_MODES
from etenet_tf.options import check, option
from etenet_tf.training.strategy import STRATEGIES

# Mixed precision policies. float16 is not offered: it needs loss scaling,
# and the two optimizers (decoder, encoder) would need two loss scales;
# bfloat16 needs none.
PRECISIONS = {"none": "float32", "bfloat16": "mixed_bfloat16"}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Options of the training stages (pretrain, finetune, ...).

    Args:
        encoder_weights: initial encoder weights of a new model.
        calibrate_batchnorm: estimate encoder BatchNorm statistics first.
        calibration_batches, calibration_batch_size: data for that.
        strategy: tf.distribute strategy.
        batch_size: global training batch size (videos).
        eval_batch_size: batch size of validation, caching and evaluation.
        pretrain_epochs, finetune_epochs: epochs per stage.
        learning_rate: decoder learning rate (pretrain).
        finetune_learning_rate: decoder learning rate in finetune.
        encoder_learning_rate: encoder learning rate in finetune.
        finetune_blocks: encoder blocks unfrozen in finetune.
        lr_schedule: constant or cosine decay per stage.
        label_smoothing: of the caption loss.
        clip_norm: global gradient norm clip (per optimizer).
        gradient_accumulation_steps: batches per optimizer update.
        remat: gradient checkpointing of the encoder in finetune.
        mixed_precision: `none` or `bfloat16`.
        checkpoint_every_steps: resume checkpoint interval.
        best_metric: validation score that picks the best checkpoint.
        seed: initial weights, data order, caption choice.
    """

    encoder_weights: str = option("imagenet", "Initial encoder weights: imagenet (Keras cache, "
                                  "else downloaded), none, or a weights file path.")
    calibrate_batchnorm: str = option(
        "auto", "Estimate encoder BatchNorm statistics from training frames before pretrain "
        "(auto: only with --encoder_weights=none).", choices=("auto", "true", "false"))
    calibration_batches: int = option(8, "Batches used for BatchNorm calibration.", low=1)
    calibration_batch_size: int = option(8, "Videos per calibration batch.", low=1)
    strategy: str = option("auto", "tf.distribute strategy.", choices=STRATEGIES)
    batch_size: int = option(16, "Global training batch size (videos).", low=1)
    eval_batch_size: int = option(32, "Batch size for validation, caching and evaluation.",
                                  low=1)
    pretrain_epochs: int = option(20, "Epochs of pretrain.", low=1)
    finetune_epochs: int = option(5, "Epochs of finetune (0: no finetune stage in "
                                  "--stage=all).", low=0)
    learning_rate: float = option(2e-4, "Decoder learning rate (Adam).", low=0.0,
                                  low_open=True)
    finetune_learning_rate: float = option(0.0, "Decoder learning rate in finetune "
                                           "(0: --learning_rate).", low=0.0)
    encoder_learning_rate: float = option(1e-5, "Encoder learning rate in finetune (Adam).",
                                          low=0.0)
    finetune_blocks: int = option(-1, "Encoder blocks unfrozen in finetune: -1 = all, N = top N.",
                                  low=-1)
    lr_schedule: str = option("constant", "Learning rates per stage: constant, or cosine decay "
                              "to 10% over the stage.", choices=("constant", "cosine"))
    label_smoothing: float = option(0.0, "Label smoothing of the caption loss.", low=0.0,
                                    high=1.0, high_open=True)
    clip_norm: float = option(5.0, "Global gradient norm clip.", low=0.0, low_open=True)
    gradient_accumulation_steps: int = option(
        1, "Batches per optimizer update: their gradients are averaged, so N steps of "
        "--batch_size=b update like one step of N*b, in the memory of b.", low=1)
    remat: str = option(
        "none", "Finetune: recompute encoder activations in the backward pass instead of "
        "keeping them (gradient checkpointing, keras.remat): none, blocks (a checkpoint per "
        "encoder block) or planned (checkpoints placed to minimise the peak; least memory).",
        choices=REMAT_MODES)
    mixed_precision: str = option("none", "Mixed precision policy (bfloat16 recommended on "
                                  "GPUs).", choices=PRECISIONS)
    checkpoint_every_steps: int = option(50, "Resume checkpoint interval (0: per epoch).", low=0)
    best_metric: str = option("CIDEr", "Validation metric that picks the best checkpoint "
                              "(a caption metric, or acc_<attribute> / acc_all when the clips "
                              "have known attributes).")
    seed: int = option(0, "Seed for initial weights, data order and caption choice.", low=0)
    scst_epochs: int = option(0, "Epochs of self-critical training on CIDEr-D (0: no scst "
                              "stage in --stage=all).", low=0)
    scst_from: str = option("auto", "Checkpoint scst starts from: auto (finetune if trained, "
                            "else pretrain), finetune or pretrain. The encoder stays frozen; "
                            "its features are cached once.",
                            choices=("auto", "pretrain", "finetune"))
    scst_samples: int = option(5, "Captions sampled per clip in scst (K).", low=1)
    scst_baseline: str = option("mean", "scst reward baseline: mean (of the clip's other "
                                "samples) or greedy (the greedy caption's reward).",
                                choices=("mean", "greedy"))
    scst_sampling: str = option("random", "How scst draws its K captions per clip: random "
                                "(the whole distribution), top_k (the --scst_top_k likeliest "
                                "words) or top_p (the fewest likeliest words holding "
                                "--scst_top_p of the probability).",
                                choices=tuple(DRAWN_RULES))
    scst_top_k: int = option(10, "Words kept per step by --scst_sampling=top_k.", low=1)
    scst_top_p: float = option(0.9, "Probability mass kept per step by --scst_sampling=top_p.",
                               low=0.0, high=1.0, low_open=True)
    scst_learning_rate: float = option(5e-5, "Decoder learning rate in scst (about 10x below "
                                       "cross-entropy's).", low=0.0, low_open=True)
    scst_include_end: bool = option(True, "Count <end> as a word in the scst reward (a caption "
                                    "cut short or running on loses n-grams).")

    def validate(self):
        check(self)
        if self.scst_baseline == "mean" and self.scst_samples < 2:
            raise UsageError(f"--scst_baseline=mean needs --scst_samples >= 2 (the baseline of "
                             f"a sample is the mean reward of the others), not "
                             f"{self.scst_samples}")
        if self.remat != "none" and self.finetune_blocks == 0:
            raise UsageError(f"--remat={self.remat} recomputes the encoder's activations in "
                             "finetune's backward pass, but --finetune_blocks=0 freezes the "
                             "encoder, so no gradient flows through it; drop --remat or "
                             "unfreeze blocks")

    def epochs(self, stage):
        """Epochs of a training stage."""
        value = getattr(self, f"{stage}_epochs", None)
        if value is None:
            raise UsageError(f"no --{stage}_epochs flag: {stage} is not a training stage")
        return value
