"""The README and docs/: every relative link and #anchor resolves, the README
stays a front door, and every fault in docs/faults.md names a test that exists."""

import glob
import os
import re

import pytest

from helpers import ROOT

PAGES = sorted([os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


def prose(text):
    """`text` without fenced code blocks and inline code spans (links and
    headings inside code are not links or headings)."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading):
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation
    other than `-` and `_` removed, spaces turned to `-`."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link shows its text
    text = re.sub(r"[*_]{1,3}(\S.*?)[*_]{1,3}", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path):
    """The anchors of a Markdown file's headings, duplicates numbered as
    GitHub numbers them (`name`, `name-1`, ...)."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", open(path, encoding="utf-8").read(),
                  flags=re.S | re.M)
    seen, found = {}, set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path):
    text = prose(open(path, encoding="utf-8").read())
    return [a or b for a, b in LINK.findall(text)]


def test_slugs_follow_github():
    assert slug("Self-critical training (scst)") == "self-critical-training-scst"
    assert slug("The demo (`flags/shapes.cfg`)") == "the-demo-flagsshapescfg"
    assert slug("The model: what it sees") == "the-model-what-it-sees"
    assert slug("The paper's setting on one GPU") == "the-papers-setting-on-one-gpu"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), file_part)) \
            if file_part else page
        if not os.path.exists(resolved):
            broken.append(f"{target}: no such file")
        elif anchor and (not resolved.endswith(".md") or anchor not in anchors(resolved)):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{os.path.relpath(page, ROOT)}: " + "; ".join(broken)


def test_readme_is_a_front_door():
    """The title first, then the two set-up commands, in at most 200 lines."""
    lines = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()
    assert len(lines) <= 200, len(lines)
    assert lines[0] == "# etenet_tf"
    start = lines.index("```bash")
    assert all(not line.strip() for line in lines[1:start])
    commands = lines[start + 1:lines.index("```", start)]
    assert commands == [
        'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python main.py '
        "--flagfile=flags/shapes.cfg --stage=all",
        '.venv/bin/python -m pytest -q -m "not slow" tests',
    ]
    # CI runs the README's test command as written, then the slow tests
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().splitlines()
    assert commands[1] in ci and (
        '.venv/bin/python -m pytest -q -m slow -n 2 --dist loadfile tests' in ci)


def test_docs_index_lists_every_page():
    index = os.path.join(ROOT, "docs", "README.md")
    listed = {os.path.normpath(os.path.join(ROOT, "docs", target.partition("#")[0]))
              for target in links(index)}
    pages = set(glob.glob(os.path.join(ROOT, "docs", "*.md"))) - {index}
    assert pages <= listed, sorted(os.path.basename(p) for p in pages - listed)


def test_no_table_cell_is_an_essay():
    """Long explanations are prose, not table cells."""
    for page in PAGES:
        for line in prose(open(page, encoding="utf-8").read()).splitlines():
            if line.startswith("|"):
                cells = re.split(r"(?<!\\)\|", line)[1:-1]
                assert max(map(len, cells)) <= 600, (os.path.basename(page), line[:80])


def defined_tests():
    """{test file name: names of the test functions it defines}."""
    found = {}
    for path in glob.glob(os.path.join(ROOT, "tests", "test_*.py")):
        text = open(path, encoding="utf-8").read()
        found[os.path.basename(path)] = set(re.findall(r"^\s*def (test_\w+)", text, flags=re.M))
    return found


def test_every_fault_names_a_test_that_exists():
    """docs/faults.md: fault | what happens | test, where the test column
    names `file::test` (or a test file) that is in tests/."""
    tests = defined_tests()
    text = open(os.path.join(ROOT, "docs", "faults.md"), encoding="utf-8").read()
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| fault | what happens |")]
    assert len(rows) >= 40
    missing = []
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert len(cells) == 3, row[:80]
        names = re.findall(r"`([^`]+)`", cells[2])
        assert names, f"no test named: {row[:80]}"
        for name in names:
            file_name, _, function = name.partition("::")
            if file_name not in tests or (function and function not in tests[file_name]):
                missing.append(name)
    assert not missing, missing
