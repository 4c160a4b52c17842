"""Naming the videos to caption: files, directories, patterns, list files."""

import os

from etenet_tf.data.inputs import expand_video_inputs


def test_files_directories_patterns_and_list_files(tmp_path):
    (tmp_path / "clips" / "deep").mkdir(parents=True)
    for name in ("clips/b.mp4", "clips/a.webm", "clips/deep/c.avi", "clips/notes.txt",
                 "with,comma.mp4", "odd.bin"):
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# my clips\nclips/a.webm\n\nwith,comma.mp4\nmissing.mp4\n")
    videos, problems = expand_video_inputs(
        [str(tmp_path / "clips"), str(tmp_path / "*.mp4"), str(tmp_path / "odd.bin"),
         str(tmp_path / "nothing*")],
        [str(listing), str(tmp_path / "no_list.txt")])
    rel = [os.path.relpath(v, tmp_path) for v in videos]
    # directories recursively by extension, each video once at its first mention;
    # a file named explicitly is tried whatever its extension
    assert rel == ["clips/a.webm", "clips/b.mp4", "clips/deep/c.avi", "with,comma.mp4",
                   "odd.bin"]
    assert [(os.path.relpath(n, tmp_path), r) for n, r in problems] == [
        ("no_list.txt", "cannot read the list file (No such file or directory)"),
        ("nothing*", "no video file matches this pattern"),
        ("missing.mp4", "no such file or directory"),
    ]


def test_both_runners_read_the_comma_separated_form(tmp_path):
    """`caption_inputs` is what the local and the Beam caption stage read:
    the old comma-separated `--videos` (with a note) as well as a file
    whose name holds a comma."""
    from etenet_tf.data.inputs import caption_inputs
    for name in ("a.mp4", "b.mp4", "with,comma.mp4"):
        (tmp_path / name).write_bytes(b"x")
    notes = []
    videos, problems = caption_inputs(
        [f"{tmp_path}/a.mp4,{tmp_path}/b.mp4", str(tmp_path / "with,comma.mp4")],
        warn=notes.append)
    assert [os.path.basename(v) for v in videos] == ["a.mp4", "b.mp4", "with,comma.mp4"]
    assert problems == [] and len(notes) == 1 and "separated by commas" in notes[0]
