"""The stages of `main.py`, one module each with `run(config)` (the training
stages share one, `jobs.train`, made from the stage registry), and the
`ExperimentConfig` they read."""

from etenet_tf.jobs.config import SECTIONS, CaptionConfig, ExperimentConfig
from etenet_tf.jobs.registry import JOBS, STAGES, TRAINING_STAGES, Job, checkpoint_stages, run

__all__ = ["JOBS", "SECTIONS", "STAGES", "TRAINING_STAGES", "CaptionConfig", "ExperimentConfig",
           "Job", "checkpoint_stages", "run"]
