"""Where the caption stage's records go (`--output`), and resuming from them.

Two formats, chosen by the file name:

- `*.json`: one JSON object `{video: record without "video"}`, written
  atomically once every video is done (the format of the first versions).
- anything else (`captions.jsonl`): JSON Lines, one record per video
  (`generation.caption_records` / `error_record`), appended as the run
  goes. Each batch's lines are one `write` of whole lines, then an
  `fsync`. A re-run with the same `--output` reads the file first: the
  videos it holds are skipped and the rest appended, so a run stopped
  after 9,000 of 10,000 videos (Ctrl-C, kill -9, a power cut) does the
  last 1,000. A line cut short by a kill is removed before anything is
  appended, so no line is ever half-written or repeated. A file that is
  not such a record list is refused rather than appended to, and two runs
  never append to one file at once (`files.exclusive_lock`). A write that
  fails (a full disk) is cut back to the last whole line before the error
  (`OutputWriteError`, naming the file) is raised.

File names: any name the file system holds goes through losslessly. In
JSON (both formats, and every other JSON file of the package:
`files.json_dumps`) text is UTF-8 and a byte of a name that is not UTF-8
is the escape `\\udcXX` (byte 0xE9 -> `\\udce9`, Python's
`surrogateescape`): `json.loads` gives the `str` back, `os.fsencode` the
bytes. On stdout and stderr each result is one line `path<TAB>caption`
(`caption_line`), both fields escaped so that a name with a tab or a
newline stays one line: backslash -> `\\\\`, tab -> `\\t`, newline
-> `\\n`, carriage return -> `\\r`, an undecodable byte -> `\\xHH`
(lower-case hex). `parse_caption_line` reads such a line back.
"""

import json
import os
import re

from etenet_tf import files
from etenet_tf.errors import UserError
from etenet_tf.files import json_dumps, write_json


class OutputFileError(UserError):
    """An existing `--output` is not a caption record file."""


class OutputWriteError(UserError):
    """`--output` could not be written (a full disk): nothing of the batch
    is left in it."""


_TO_ESCAPE = re.compile("[\\\\\t\n\r\ud800-\udfff]")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ESCAPED = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|[\\tnr])")
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _escape_char(match):
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def _unescape_char(match):
    code = match.group(1)
    if code[0] == "x":
        return chr(0xDC00 + int(code[1:], 16))
    if code[0] == "u":
        return chr(int(code[1:], 16))
    return _UNESCAPES[code]


def escape_field(text):
    """A name or caption as it appears in a stdout/stderr line: backslash,
    tab, newline and carriage return escaped (`\\\\`, `\\t`, `\\n`,
    `\\r`), an undecodable byte of a file name as `\\xHH`."""
    return _TO_ESCAPE.sub(_escape_char, text)


def unescape_field(text):
    """The inverse of `escape_field`."""
    return _ESCAPED.sub(_unescape_char, text)


def caption_line(video, text):
    """The line `path<TAB>text` of one result (no newline), both escaped."""
    return f"{escape_field(video)}\t{escape_field(text)}"


def parse_caption_line(line):
    """`(video, text)` of a line printed by the caption stage (`caption_line`;
    an error line's text starts with `ERROR: `). `video` is the `str` the
    stage was given: `os.fsencode(video)` gives a file name's bytes.

    Raises:
        ValueError: the line holds no tab.
    """
    video, sep, text = line.rstrip("\n").partition("\t")
    if not sep:
        raise ValueError(f"not a caption line (no tab): {line!r}")
    return unescape_field(video), unescape_field(text)


def record_key(video):
    """What identifies a video across runs: its absolute path (remote
    paths as they are), so a relative name from another directory is
    another video."""
    return video if "://" in video else os.path.abspath(video)


def is_json_lines(path):
    """Whether `path` gets JSON Lines (anything but `*.json`)."""
    return not path.lower().endswith(".json")


class NoOutput:
    """No `--output`: records are not kept."""

    path = None
    done = frozenset()

    def write(self, records):
        pass

    def finish(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JsonOutput(NoOutput):
    """`*.json`: `{video: record}` written atomically at the end."""

    def __init__(self, path):
        self.path = path
        self.results = {}

    def write(self, records):
        for record in records:
            self.results[record["video"]] = {k: v for k, v in record.items() if k != "video"}

    def finish(self):
        write_json(self.path, self.results)


class JsonLinesOutput(NoOutput):
    """JSON Lines appended per batch; resumes from what an earlier run wrote.

    Opening reads the existing file (the `done` keys), cuts a partial last
    line and takes the file's lock; `close` releases it.

    Raises:
        OutputFileError: the file holds something other than records.
        files.LockedError: another run is writing it.
    """

    def __init__(self, path):
        self.path = path
        directory, name = os.path.split(os.path.abspath(path))
        self._lock = files.exclusive_lock(directory, "--stage=caption", name=f".{name}.lock")
        self._lock.__enter__()
        try:
            self.done, self.cut = self._resume()
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        self.written = 0

    def _resume(self):
        """`(keys of the videos in the file, bytes of a partial last line cut)`."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return set(), 0
        end = data.rfind(b"\n") + 1  # everything after the last newline is a cut line
        done = set()
        for number, line in enumerate(data[:end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("video"), str):
                raise OutputFileError(
                    f"--output={self.path} exists and line {number} is not a caption record "
                    "of this stage; give another --output or move that file away (a re-run "
                    "only appends to a file of caption records)")
            done.add(record_key(record["video"]))
        if end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        return done, len(data) - end

    def write(self, records):
        """Appends whole lines (one `write`), then syncs them to disk.

        Raises:
            OutputWriteError: the write or the sync failed; the file was
                cut back to its last whole line first.
        """
        if not records:
            return
        data = "".join(json_dumps(r) + "\n" for r in records).encode("utf-8")
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, end)
                os.fsync(self._fd)
            except OSError:
                pass  # then the next run cuts the partial line (`_resume`)
            advice = files.write_failure_advice(e, os.path.dirname(os.path.abspath(self.path)))
            raise OutputWriteError(
                f"cannot write --output={self.path} ({e.strerror or e}): the records of this "
                f"batch were not kept and the file ends at its last whole record; "
                f"{advice[:1].lower()}{advice[1:]}, then re-run the same command (it "
                "resumes)") from None
        self.done.update(record_key(r["video"]) for r in records)
        self.written += len(records)

    def close(self):
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        self._lock.__exit__(None, None, None)

    _fd = None


def open_output(path):
    """The output of `--output=path` ('' for none)."""
    if not path:
        return NoOutput()
    return JsonLinesOutput(path) if is_json_lines(path) else JsonOutput(path)
