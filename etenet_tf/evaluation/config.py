"""What `evaluate` scores: `EvaluationConfig`."""

import dataclasses

from etenet_tf.options import check, option


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """Options of evaluation (and of which checkpoint later stages use).

    Args:
        split: the split to evaluate.
        checkpoint: which stage's best checkpoint: `auto` (the last trained
            stage), a training stage's name, or `all` (evaluate: each
            trained stage; `both` is accepted for the two paper stages).
    """

    split: str = option("test", "Split to evaluate.", choices=("train", "val", "test"))
    checkpoint: str = option("auto", "Which best checkpoint to use: auto (the last trained "
                             "stage), pretrain, finetune, scst, or all (evaluate each trained "
                             "stage; 'both' is the same).")

    def validate(self):
        check(self)
