"""Entry point: `python main.py --stage=...` (see README).

Converts the flags to an `ExperimentConfig`, runs the stage's job and turns
every error meant for people (`etenet_tf.errors.UserError`) into one
`error:` line and its exit status: 2 for a command to fix, 1 for a run
that failed; Ctrl-C exits 130 and SIGTERM 143, after saving what can be
resumed.
"""

import errno
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out

from absl import (
    app,  # noqa: E402
    logging,  # noqa: E402
)
from absl import flags as absl_flags  # noqa: E402

from etenet_tf import interrupts  # noqa: E402
from etenet_tf.cli import flags as flags_lib  # noqa: E402
from etenet_tf.errors import UsageError, UserError  # noqa: E402

USAGE_ERROR = UsageError.exit_code


def _message(error):
    """An exception's message as its author wrote it (`str(KeyError(m))`
    would add quotes)."""
    if len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])} (flags need --name=value)")
    logging.set_verbosity(logging.WARNING)  # TF's per-save INFO lines drown the progress bars
    from etenet_tf import jobs
    try:
        config = flags_lib.to_config()
        config.validate()
        result = jobs.run(config)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (interrupts.install)
        detail = getattr(e, "detail", None)
        _fail(f"stopped by {interrupts.signal_name(e)}{'; ' + detail if detail else ''}; re-run "
              "the same command to resume", code=interrupts.exit_code(e))
    except UserError as e:
        _fail(_message(e), code=e.exit_code)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        _fail(f"could not write {e.filename or 'a file'}: {e.strerror}. Free disk space and "
              "re-run the same command: finished work is kept", code=1)
    if config.stage == "caption" and result:
        sys.exit(1)  # some videos failed; each got its own error line


def _fail(message, code=USAGE_ERROR):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _parse(argv):
    try:
        return absl_flags.FLAGS(argv)
    except absl_flags.Error as e:
        # absl prefixes some messages with its own "ERROR:" tag
        message = str(e)
        while message.upper().startswith("ERROR:"):
            message = message[len("ERROR:"):].lstrip(": ")
        _fail(message)


def run():
    interrupts.install()
    flags_lib.define_flags()
    try:
        app.run(main, flags_parser=_parse)
    except KeyboardInterrupt as e:  # before main() started
        _fail(f"stopped by {interrupts.signal_name(e)}", code=interrupts.exit_code(e))


def run_in_process(argv):
    """Parses `argv` (`["main.py", "--flag=value", ...]`) and runs it as
    `main.py` does, in this process, without `app.run`'s process set-up
    (signal handlers, absl's logging start-up): the tests' seam for the
    command line where no process boundary is under test. Exits as
    `main.py` would (`SystemExit` with the status); the flags are reset
    before and after.
    """
    flags_lib.define_flags()
    absl_flags.FLAGS.unparse_flags()
    try:
        main(_parse(argv))
    finally:
        absl_flags.FLAGS.unparse_flags()


def console():
    """The `etenet` command (setup.cfg entry point): `etenet STAGE --flags`
    is `python main.py --stage=STAGE --flags` (`etenet --stage=STAGE` and
    `etenet --help` work too)."""
    args = sys.argv[1:]
    if args and not args[0].startswith("-"):
        args = [f"--stage={args[0]}", *args[1:]]
    sys.argv = [os.path.basename(sys.argv[0]) or "etenet", *args]
    run()
