"""Data sources: annotation files (or a generator) -> `VideoExample`s.

Adding a source is one module with a `load(config) -> [VideoExample]`
function and one line in `SOURCES`; `prepare` and the command line read
the registry (`--dataset` choices come from it).
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Source:
    """A registered data source.

    Args:
        module: module under `etenet_tf.data.sources` with `load(config)`,
            `config` being a `DataConfig`.
        needs_annotations: whether `--annotations` must be given.
        help: one line for the README and `--help`.
    """

    module: str
    needs_annotations: bool
    help: str

    def load(self, config):
        """The examples of this source for a `DataConfig`."""
        return importlib.import_module(f"etenet_tf.data.sources.{self.module}").load(config)


SOURCES = {
    "shapes": Source("shapes", False, "synthetic moving shapes, generated on the spot"),
    "scenes": Source("scenes", False, "synthetic multi-object scenes (where, relation, order)"),
    "msrvtt": Source("msrvtt", True, "MSR-VTT v1.0 official annotations"),
    "msvd": Source("msvd", True, "MSVD captions with split lists or youtube_mapping.txt"),
    "custom": Source("custom", True, "a CSV or JSONL of video, caption, split, attributes"),
}


def load_examples(config):
    """The `VideoExample`s of `config.dataset`."""
    return SOURCES[config.dataset].load(config)
