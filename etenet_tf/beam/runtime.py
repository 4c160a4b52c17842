"""Running a pipeline: Beam's presence, its options, work lists, failures.

`require_beam` imports `apache_beam` or says which extra to install.
`pipeline_options` turns `--beam_options` into `PipelineOptions`, refusing
options Beam does not know (Beam itself only logs and drops them), and
defaults to DirectRunner with `--workers` processes. `stage_work` writes
the list of videos to files beside the output and the pipeline reads them
back (`read_work`): a list of millions of videos inside the pipeline
graph would exceed what a runner accepts (Dataflow: 10 MB per job), while
the list of its files stays small. `run` runs a pipeline to the end and
turns a failure into one line. `Decoding` is the decoding worker process
of a DoFn (the local runner's `decode_pool`, with `--decode_timeout_s`).
"""

import contextlib
import json
import logging
import os
import shlex

from etenet_tf import files, interrupts
from etenet_tf.data import decode_pool, video_decode
from etenet_tf.errors import UsageError, UserError

EXTRA = 'pip install -e ".[beam]"'
NAMESPACE = "etenet_tf"  # of the pipeline metrics (counters)
VIDEOS_PER_WORK_FILE = 1000


class BeamUnavailableError(UserError):
    """`--runner=beam` without Apache Beam installed."""


class PipelineError(UserError):
    """The Beam pipeline failed or was stopped."""


def require_beam():
    """`apache_beam`, imported (quietly: its GCP modules log warnings about
    missing optional clients).

    Raises:
        BeamUnavailableError: it is not installed (the message says `pip
            install -e ".[beam]"`) or fails to import.
    """
    with _quiet("root"):
        try:
            import apache_beam
        except ImportError as e:
            if (e.name or "").split(".")[0] == "apache_beam":
                raise BeamUnavailableError(
                    f"--runner=beam needs Apache Beam, which is not installed: {EXTRA}") from None
            raise BeamUnavailableError(
                f"--runner=beam: Apache Beam does not import ({e}); reinstall it with "
                f"{EXTRA}") from None
    return apache_beam


@contextlib.contextmanager
def _quiet(*loggers):
    """Raises the level of some loggers to ERROR while the block runs."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _given(args, name):
    """Whether option `--name` is among `args`."""
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in args)


def pipeline_options(beam_config, workers=0):
    """The `PipelineOptions` of `--beam_options`.

    Without `--runner` among them: DirectRunner; without
    `--direct_running_mode` either, in `--workers` processes
    (`--direct_running_mode=multi_processing`, `--direct_num_workers`; 0:
    one per CPU), as the local runner's pool. The SDK workers log at
    WARNING unless `--default_sdk_harness_log_level` says otherwise.

    Raises:
        UsageError: a string that does not split, or options Beam does not
            know (a typo would otherwise be dropped with a log line).
    """
    require_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    try:
        args = shlex.split(beam_config.beam_options)
    except ValueError as e:
        raise UsageError(f"--beam_options={beam_config.beam_options!r} does not split into "
                         f"options ({e})") from None
    stray = [a for i, a in enumerate(args) if not a.startswith("--") and (
        i == 0 or not args[i - 1].startswith("--") or "=" in args[i - 1])]
    if stray:
        raise UsageError(f"--beam_options: {stray[0]!r} is not an option (write --name=value)")
    if not _given(args, "runner"):
        args.append("--runner=DirectRunner")
    if _runner_kind(_runner_name(args)) == "direct" and not _given(args, "direct_running_mode"):
        args.append("--direct_running_mode=multi_processing")
        if not _given(args, "direct_num_workers"):
            args.append(f"--direct_num_workers={workers or os.cpu_count() or 1}")
    if not _given(args, "default_sdk_harness_log_level"):
        args.append("--default_sdk_harness_log_level=WARNING")
    options = PipelineOptions(args)
    with _quiet("apache_beam.options.pipeline_options"):
        unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) -
                         set(options.get_all_options()))
    if unknown:
        raise UsageError("--beam_options: Beam knows no option "
                         f"{', '.join('--' + u for u in unknown)}")
    return options


def _runner_name(args):
    """The value of the last `--runner=X` or `--runner X` in `args`."""
    name = ""
    for i, a in enumerate(args):
        if a.startswith("--runner="):
            name = a.split("=", 1)[1]
        elif a == "--runner" and i + 1 < len(args):
            name = args[i + 1]
    return name


def _runner_kind(name):
    """`direct` for `DirectRunner`, `direct`, `directrunner`... (Beam takes
    a runner's name in any case, with or without `Runner`)."""
    name = (name or "").lower()
    return name[:-len("runner")] if name.endswith("runner") else name


def runner_name(options):
    """The runner the options pick, e.g. `DirectRunner` or `DataflowRunner`."""
    from apache_beam.options.pipeline_options import StandardOptions
    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) else type(runner).__name__


def describe(options):
    """`DirectRunner, 2 processes` or the runner's name, for messages."""
    name = runner_name(options)
    if _runner_kind(name) == "direct":
        from apache_beam.options.pipeline_options import DirectOptions
        direct = options.view_as(DirectOptions)
        unit = "processes" if direct.direct_running_mode == "multi_processing" else "threads" \
            if direct.direct_running_mode == "multi_threading" else "in memory"
        return f"DirectRunner, {direct.direct_num_workers} {unit}" if unit != "in memory" \
            else "DirectRunner in memory"
    return name


def runs_here(options):
    """Whether the runner runs on this machine (DirectRunner, Prism), so
    that the workers see this machine's files."""
    return _runner_kind(runner_name(options)) in ("direct", "prism")


def local_paths_hint(options, paths, flag):
    """One line when a cluster's workers would have to read local paths."""
    if runs_here(options) or not any(p and not files.is_remote(p) for p in paths):
        return None
    return (f"note: {flag} names local paths: the {runner_name(options)} workers must see "
            "them at the same paths (a shared mount), or use gs://...")


def needs_package_hint(options):
    """One line for runners whose workers must be given this package, or None."""
    from apache_beam.options.pipeline_options import SetupOptions, WorkerOptions
    if _runner_kind(runner_name(options)) != "dataflow":
        return None
    setup = options.view_as(SetupOptions)
    if setup.extra_packages or setup.setup_file or setup.requirements_file or \
            options.view_as(WorkerOptions).sdk_container_image:
        return None
    return ("note: Dataflow workers need etenet_tf and its dependencies: pass "
            "--extra_package=dist/etenet_tf-0.1.0-py3-none-any.whl (pip wheel --no-deps -w dist .)"
            " or --sdk_container_image (README: Scale-out with Apache Beam)")


# -- Decoding ------------------------------------------------------------------


class Decoding:
    """Decoding for a DoFn: `video_decode.decode_job` in one worker process
    of `decode_pool` (started on first use, replaced when a video exceeds
    `timeout_s` or kills it), so a stuck or crashing video costs its own
    record only, as on the local runner.

    Call `setup` and `teardown` from the DoFn's. In a DirectRunner worker
    process that this launcher started, `setup` also makes that process
    end with the launcher (`interrupts.die_with_parent`): a launcher killed
    with kill -9 leaves no worker behind.

    Args:
        timeout_s: most seconds per video (`--decode_timeout_s`).
    """

    def __init__(self, timeout_s):
        self.timeout_s = timeout_s
        self.launcher_pid = os.getpid()
        self.worker = None

    def setup(self):
        if os.getpid() != self.launcher_pid and os.getppid() == self.launcher_pid:
            interrupts.die_with_parent(self.launcher_pid)

    def decode(self, job):
        """`decode_job(job)`: `(result, None)` or `(None, error message)`.

        A remote video is fetched here, in the process that runs the DoFn
        and sees its file systems (TensorFlow's `ram://` is private to one
        process), into an unnamed temporary file the worker reads through
        `/proc/<this pid>/fd/N`; messages name the remote path.
        """
        path = job[0]
        if not video_decode.is_remote(path):
            return self._run(job)
        try:
            with video_decode.local_copy(path) as local:
                shared = local.replace("/proc/self/", f"/proc/{os.getpid()}/", 1)
                result, error = self._run((shared,) + tuple(job[1:]))
        except video_decode.VideoDecodeError as e:
            return None, str(e)
        return result, error and error.replace(shared, path)

    def _run(self, job):
        if self.worker is None:
            self.worker = decode_pool.DecodeWorker(video_decode.decode_job)
        result = self.worker.run(job, self.timeout_s)
        if not self.worker.alive:
            self.worker.kill()
            self.worker = None
        return result

    def teardown(self):
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def __getstate__(self):  # a DoFn is pickled: the process stays behind
        return dict(self.__dict__, worker=None)


# -- Work lists ----------------------------------------------------------------


def stage_work(work_dir, items, per_file=VIDEOS_PER_WORK_FILE):
    """Writes `items` (JSON values) to files of `per_file` lines in
    `work_dir` (emptied first); returns their paths."""
    remove_work(work_dir)
    files.makedirs(work_dir)
    paths = []
    for start in range(0, len(items), per_file):
        path = os.path.join(work_dir, f"work-{start // per_file:06d}.jsonl")
        files.write_text(path, "".join(files.json_dumps(item) + "\n"
                                       for item in items[start:start + per_file]))
        paths.append(path)
    return paths


def read_work(path):
    """The items of one work file (a pipeline step)."""
    return [json.loads(line) for line in files.read_text(path).splitlines() if line]


def remove_work(work_dir):
    """Deletes a work directory and what is in it (no error if missing)."""
    if files.is_remote(work_dir):
        if files.isdir(work_dir):
            with files.remote_errors(work_dir):
                files.gfile().rmtree(work_dir)
        return
    import shutil
    shutil.rmtree(work_dir, ignore_errors=True)


# -- Running -------------------------------------------------------------------


def run(build, options, *, advice):
    """Builds a pipeline with `build(pipeline)`, runs it to the end and
    returns its counters (`{name: value}` of the `NAMESPACE` metrics; empty
    where the runner reports none).

    Args:
        build: callable(pipeline) adding the transforms.
        options: `PipelineOptions`.
        advice: what to do when it fails (ends the error line).

    Raises:
        PipelineError: it failed or ended in another state than DONE.
    """
    beam = require_beam()
    from apache_beam.runners.runner import PipelineState

    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    try:
        # DirectRunner relays each worker's start-up warnings (about optional
        # GCP clients and its own flags) a second time: keep them out
        with _quiet("apache_beam.runners.portability.local_job_service"):
            result = pipeline.run()
            state = result.wait_until_finish()
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as e:
        raise PipelineError(f"the Beam pipeline failed: {failure_line(e)}; {advice}") from e
    if state is not None and state != PipelineState.DONE:
        raise PipelineError(f"the Beam pipeline ended {state}; {advice}")
    return counters(result)


def failure_line(error):
    """The line of a pipeline failure that says what went wrong: Beam's
    message holds the worker's whole traceback, whose last line names the
    exception and the step (`... [while running 'Decode']`)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else type(error).__name__


def counters(result):
    """`{name: committed value}` of the `NAMESPACE` counters of a result."""
    try:
        from apache_beam.metrics.metric import MetricsFilter
        found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # a runner without metrics support
        return {}
    totals = {}
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
    return totals
