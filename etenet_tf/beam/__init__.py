"""Scale-out on Apache Beam: `--stage=prepare` and `--stage=caption` with
`--runner=beam`.

The jobs (`etenet_tf.jobs.prepare`, `etenet_tf.jobs.caption`) hand their
work to `etenet_tf.beam.prepare` / `etenet_tf.beam.caption` when
`--runner=beam`. Both build a pipeline from the same per-video code as the
local runner (decoding, records, caption records), so that their output is
the same whoever runs it: DirectRunner on this machine, Dataflow, Flink or
Spark (`--beam_options`).

Apache Beam is an optional extra (`pip install -e ".[beam]"`): this
package imports `apache_beam` only inside functions, and only here, so
the default install neither needs nor loads it (`runtime.require_beam`
says which extra to install).
"""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
