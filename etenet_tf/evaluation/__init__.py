"""Evaluation: pycocoevalcap caption metrics, attribute accuracy, pictures."""

from etenet_tf.evaluation.attention_image import save_attention_image
from etenet_tf.evaluation.attributes import accuracy as attribute_accuracy
from etenet_tf.evaluation.config import EvaluationConfig
from etenet_tf.evaluation.evaluate import evaluate_model
from etenet_tf.evaluation.metrics import METRICS, format_table, score

__all__ = ["METRICS", "EvaluationConfig", "attribute_accuracy",
           "evaluate_model", "format_table", "save_attention_image", "score"]
