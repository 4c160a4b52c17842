"""The public names of `etenet_tf`, in one table, and the one way they are
imported: on first use.

Each package's `__init__.py` is its docstring and one line,

    __all__, __getattr__, __dir__ = exports.package(__name__)

so `etenet_tf.model.ModelConfig` imports `etenet_tf.model.config` the first
time it is read, and importing a package costs nothing (the prepare and
decode workers import `etenet_tf.data.video_decode` without TensorFlow).
A new public name is one entry here; `tests/test_python_api.py` checks
that every entry resolves and that each package lists exactly these.

An entry maps a public name to the module that defines it, or to
`"module:attribute"` where the public name differs from the module's.
"""

import importlib
import sys

PUBLIC = {
    "etenet_tf": {
        "ExperimentConfig": "etenet_tf.jobs.config",
        "ModelConfig": "etenet_tf.model.config",
        "build_captioner": "etenet_tf.model.config",
        "EtENetCaptioner": "etenet_tf.model.captioner",
        "DecodingConfig": "etenet_tf.generation.config",
        "CaptionGenerator": "etenet_tf.generation.captioning",
        "RunDir": "etenet_tf.run_dir",
        "UserError": "etenet_tf.errors",
        "UsageError": "etenet_tf.errors",
    },
    "etenet_tf.beam": {
        "RUNNERS": "etenet_tf.beam.config",
        "BeamConfig": "etenet_tf.beam.config",
    },
    "etenet_tf.cli": {
        "run": "etenet_tf.cli.main",
    },
    "etenet_tf.data": {
        "DataConfig": "etenet_tf.data.config",
        "VideoExample": "etenet_tf.data.examples",
        "AnnotationError": "etenet_tf.data.examples",
        "SOURCES": "etenet_tf.data.sources",
        "Source": "etenet_tf.data.sources",
        "load_examples": "etenet_tf.data.sources",
        "decode_video": "etenet_tf.data.video_decode",
        "sample_indices": "etenet_tf.data.video_decode",
        "VideoDecodeError": "etenet_tf.data.video_decode",
        "load_dataset_info": "etenet_tf.data.prepare",
        "train_dataset": "etenet_tf.data.pipeline",
        "eval_dataset": "etenet_tf.data.pipeline",
        "list_shards": "etenet_tf.data.records",
        "CorruptRecordsError": "etenet_tf.data.records",
    },
    "etenet_tf.demo": {},
    "etenet_tf.evaluation": {
        "METRICS": "etenet_tf.evaluation.metrics",
        "EvaluationConfig": "etenet_tf.evaluation.config",
        "attribute_accuracy": "etenet_tf.evaluation.attributes:accuracy",
        "evaluate_model": "etenet_tf.evaluation.evaluate",
        "format_table": "etenet_tf.evaluation.metrics",
        "save_attention_image": "etenet_tf.evaluation.attention_image",
        "score": "etenet_tf.evaluation.metrics",
    },
    "etenet_tf.export": {
        "ExportConfig": "etenet_tf.export.config",
        "ExportWriteError": "etenet_tf.export.serving",
        "build_archive": "etenet_tf.export.serving",
        "export": "etenet_tf.export.serving",
    },
    "etenet_tf.generation": {
        "BeamSampler": "etenet_tf.generation.samplers",
        "CaptionGenerator": "etenet_tf.generation.captioning",
        "Captions": "etenet_tf.generation.captioning",
        "DRAWN_RULES": "etenet_tf.generation.samplers",
        "DecodingConfig": "etenet_tf.generation.config",
        "GreedySampler": "etenet_tf.generation.samplers",
        "RandomSampler": "etenet_tf.generation.samplers",
        "RowSampler": "etenet_tf.generation.samplers",
        "SampledSequences": "etenet_tf.generation.samplers",
        "Sampler": "etenet_tf.generation.samplers",
        "TopKSampler": "etenet_tf.generation.samplers",
        "TopPSampler": "etenet_tf.generation.samplers",
        "drawn_sampler": "etenet_tf.generation.samplers",
        "generate": "etenet_tf.generation.captioning",
        "repeat_rows": "etenet_tf.generation.samplers",
    },
    "etenet_tf.jobs": {
        "JOBS": "etenet_tf.jobs.registry",
        "SECTIONS": "etenet_tf.jobs.config",
        "STAGES": "etenet_tf.jobs.registry",
        "TRAINING_STAGES": "etenet_tf.jobs.registry",
        "CaptionConfig": "etenet_tf.jobs.config",
        "ExperimentConfig": "etenet_tf.jobs.config",
        "Job": "etenet_tf.jobs.registry",
        "checkpoint_stages": "etenet_tf.jobs.registry",
        "run": "etenet_tf.jobs.registry",
    },
    "etenet_tf.model": {
        "DECODERS": "etenet_tf.model.decoders",
        "ENCODERS": "etenet_tf.model.encoder",
        "TEMPORAL_MODES": "etenet_tf.model.video_context",
        "CaptionDecoder": "etenet_tf.model.decoder",
        "CaptionLoss": "etenet_tf.model.losses",
        "DecoderSpec": "etenet_tf.model.decoders",
        "EncoderOptionError": "etenet_tf.model.encoder",
        "EncoderSpec": "etenet_tf.model.encoder",
        "EncoderWeightsError": "etenet_tf.model.encoder",
        "EtENetCaptioner": "etenet_tf.model.captioner",
        "FrameEncoder": "etenet_tf.model.encoder",
        "ModelConfig": "etenet_tf.model.config",
        "SoftAttentionLSTM": "etenet_tf.model.attention_lstm",
        "SpatioTemporalContext": "etenet_tf.model.video_context",
        "build_captioner": "etenet_tf.model.config",
    },
    "etenet_tf.text": {
        "END_ID": "etenet_tf.text.vocabulary",
        "PAD_ID": "etenet_tf.text.vocabulary",
        "SPECIAL_TOKENS": "etenet_tf.text.vocabulary",
        "START_ID": "etenet_tf.text.vocabulary",
        "UNK_ID": "etenet_tf.text.vocabulary",
        "CaptionTokenizer": "etenet_tf.text.tokenizer",
        "Vocabulary": "etenet_tf.text.vocabulary",
        "VocabularyError": "etenet_tf.text.vocabulary",
        "ids_to_text": "etenet_tf.text.vocabulary",
        "normalize": "etenet_tf.text.tokenizer",
        "split_words": "etenet_tf.text.tokenizer",
        "words_of": "etenet_tf.text.tokenizer",
    },
    "etenet_tf.training": {
        "STAGES": "etenet_tf.training.stages",
        "STRATEGIES": "etenet_tf.training.strategy",
        "CheckpointWriteError": "etenet_tf.training.checkpoints",
        "Objective": "etenet_tf.training.objectives",
        "StageSpec": "etenet_tf.training.stages",
        "TeacherForcing": "etenet_tf.training.objectives",
        "Trainer": "etenet_tf.training.loop",
        "TrainingCheckpoints": "etenet_tf.training.checkpoints",
        "TrainingConfig": "etenet_tf.training.config",
        "TrainingDivergedError": "etenet_tf.training.loop",
        "TrainingInputError": "etenet_tf.training.loop",
        "finetune": "etenet_tf.training.stages",
        "load_prepared": "etenet_tf.training.stages",
        "make_strategy": "etenet_tf.training.strategy",
        "pretrain": "etenet_tf.training.stages",
        "register_stage": "etenet_tf.training.stages",
        "run_stage": "etenet_tf.training.stages",
        "scst": "etenet_tf.training.stages",
    },
}


def resolve(package, name):
    """The object `package.name` stands for (imports its module)."""
    module, _, attribute = PUBLIC[package][name].partition(":")
    return getattr(importlib.import_module(module), attribute or name)


def package(name):
    """`(__all__, __getattr__, __dir__)` for the package `name`'s
    `__init__.py`: its public names, imported on first use (then kept in
    the package like any attribute)."""
    table = PUBLIC[name]

    def __getattr__(attribute):
        if attribute not in table:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        value = resolve(name, attribute)
        setattr(sys.modules[name], attribute, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[name])) | set(table))

    return sorted(table), __getattr__, __dir__
