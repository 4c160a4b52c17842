"""The whole configuration of a run: one typed config per concern.

`ExperimentConfig` bundles `DataConfig`, `ModelConfig`, `TrainingConfig`,
`DecodingConfig`, `EvaluationConfig`, `CaptionConfig`, `ExportConfig` and
`BeamConfig` (where prepare and caption run) with the stage and the model
directory. Each field of each section is
one command-line flag of the same name (`etenet_tf.options`); `from_flat`
builds the config from such `name: value` pairs (the command line, a
test, a script), `to_flat` gives them back, and `to_argv` writes them as
flags.
"""

import dataclasses

from etenet_tf.beam.config import BeamConfig
from etenet_tf.data.config import DataConfig
from etenet_tf.demo.config import DemoConfig
from etenet_tf.errors import UsageError
from etenet_tf.evaluation.config import EvaluationConfig
from etenet_tf.export.config import ExportConfig, ModelSourceConfig
from etenet_tf.generation.config import DecodingConfig
from etenet_tf.model.config import ModelConfig
from etenet_tf.options import check, flag_fields, option
from etenet_tf.training.config import TrainingConfig


@dataclasses.dataclass(frozen=True)
class CaptionConfig:
    """Options of the caption stage.

    Args:
        videos: video files, directories (searched recursively for video
            files) and glob patterns; one per `--videos` flag.
        videos_from: list files naming one video, directory or pattern a
            line (`-`: standard input).
        output: where the results go: `*.json` one JSON object at the end
            (`{path: record}`), any other name JSON Lines written as it
            goes (one record per video) and resumed by a re-run.
        attention_dir: write an attention picture per video here.
        caption_batch_size: videos captioned per model call (`--runner=beam`:
            RunInference's largest batch).
    """

    videos: tuple = option((), "caption: a video file, a directory (searched recursively for "
                           "video files) or a glob pattern; repeat the flag for more.",
                           multi=True)
    videos_from: tuple = option((), "caption: a file listing one video, directory or pattern a "
                                "line ('-': standard input); may be repeated.", multi=True)
    output: str = option("", "caption: also write the results here: *.jsonl one line per video "
                         "as it goes (a re-run resumes), *.json one object at the end.")
    attention_dir: str = option("", "caption: write an attention picture per video here.")
    caption_batch_size: int = option(8, "caption: videos per model call (decoding runs ahead "
                                     "in --workers processes).", low=1)

    def validate(self):
        check(self)


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "decoding": DecodingConfig,
    "evaluation": EvaluationConfig,
    "caption": CaptionConfig,
    "export": ExportConfig,
    "beam": BeamConfig,
    "source": ModelSourceConfig,
    "demo": DemoConfig,
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything a stage reads.

    Args:
        stage: the stage to run (`etenet_tf.jobs.JOBS`).
        model_dir: checkpoints, logs and results (`etenet_tf.run_dir`).
        progress: show progress bars where a stage has long work.
        data, model, training, decoding, evaluation, caption, export, beam,
            source (`--model`), demo: the sections.
        explicit_flags: the names of the flags the user set (on the command
            line or in a flagfile), or None for a config built in Python:
            then the flags whose value is not the default count as set
            (`jobs.model_flags` compares those with a stored model).
    """

    stage: str = option("", "What to run.")
    model_dir: str = option("runs/shapes/model", "Checkpoints, logs and results.")
    progress: bool = option(True, "Progress bars on stderr (caption, evaluate); --noprogress, "
                            "or a stderr that is not a terminal, prints one summary line "
                            "instead.")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    decoding: DecodingConfig = dataclasses.field(default_factory=DecodingConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    caption: CaptionConfig = dataclasses.field(default_factory=CaptionConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    beam: BeamConfig = dataclasses.field(default_factory=BeamConfig)
    source: ModelSourceConfig = dataclasses.field(default_factory=ModelSourceConfig)
    demo: DemoConfig = dataclasses.field(default_factory=DemoConfig)
    explicit_flags: frozenset = dataclasses.field(default=None, compare=False)

    @classmethod
    def flag_names(cls):
        """Every flag name, top-level and of every section."""
        names = [f.name for f in flag_fields(cls)]
        for section in SECTIONS.values():
            names += [f.name for f in flag_fields(section)]
        return names

    @classmethod
    def from_flat(cls, values, explicit_flags=None):
        """A config from `{flag name: value}` (missing names keep their defaults).

        Args:
            values: `{flag name: value}`.
            explicit_flags: the names the user set (the command line), or
                None (see the class doc).

        Raises:
            UsageError: a name is not a flag.
        """
        values = dict(values)
        unknown = sorted(set(values) - set(cls.flag_names()))
        if unknown:
            raise UsageError(f"unknown options: {', '.join(unknown)}")
        sections = {}
        for name, section in SECTIONS.items():
            own = {f.name: _as_field_value(f, values.pop(f.name))
                   for f in flag_fields(section) if f.name in values}
            sections[name] = section(**own)
        if explicit_flags is not None:
            explicit_flags = frozenset(explicit_flags)
        return cls(**values, **sections, explicit_flags=explicit_flags)

    def to_flat(self):
        """`{flag name: value}` of every flag."""
        flat = {f.name: getattr(self, f.name) for f in flag_fields(type(self))}
        for name, section in SECTIONS.items():
            value = getattr(self, name)
            flat.update({f.name: getattr(value, f.name) for f in flag_fields(section)})
        return flat

    def replace(self, **changes):
        """A copy with some flags changed: `config.replace(batch_size=8)`
        (the changed flags count as set)."""
        explicit = None if self.explicit_flags is None else self.explicit_flags | set(changes)
        return type(self).from_flat({**self.to_flat(), **changes}, explicit)

    @classmethod
    def flag_field(cls, name):
        """The dataclass field of flag `name` (top-level or of a section)."""
        for owner in (cls, *SECTIONS.values()):
            for f in flag_fields(owner):
                if f.name == name:
                    return f
        raise KeyError(name)

    def to_argv(self, only_changed=True):
        """The flags (`--name=value`) that give this config on the command line
        (a repeatable flag once per value)."""
        default = type(self)().to_flat()
        argv = []
        for name, value in self.to_flat().items():
            if only_changed and value == default[name]:
                continue
            if isinstance(value, tuple) and self.flag_field(name).metadata.get("multi"):
                argv += [f"--{name}={v}" for v in value]
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = str(value).lower()
            argv.append(f"--{name}={value}")
        return argv

    def validate(self):
        """Raises `UsageError` for any value out of its range or choices (every
        section: a bad flag is an error whatever the stage); each stage then
        checks what it needs (`DataConfig.validate(preparing=True)`, ...)."""
        check(self)
        for name in SECTIONS:
            check(getattr(self, name))

    @property
    def model_for_data(self):
        """The `ModelConfig` with the frame size and count of `--image_size`
        and `--frames` (training stages take them from the records)."""
        return dataclasses.replace(self.model, image_size=self.data.image_size,
                                   num_frames=self.data.frames)


def _as_field_value(field, value):
    """Lists become tuples (configs are frozen and hashable); None -> ''."""
    if isinstance(field.default, tuple):
        return tuple(value or ())
    if field.default == "" and value is None:
        return ""
    return value
