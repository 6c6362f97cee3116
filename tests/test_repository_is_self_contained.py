"""The repository stands on its own: nothing in it points at notes kept outside it.

Code, comments, docstrings, Markdown and tests say things in the project's own words, in ``docs/``; they
never send the reader to a sibling folder of notes, to a notes file named after the design, Robokassa or
BILLmanager (outside ``docs/``), or to a numbered issue of some tracker. The translation catalogues
(``.po``/``.pot``) are left out: their source references are generated.

Every citation of a section of ``docs/robokassa.md`` or ``docs/design.md`` (``docs/robokassa.md §2.3``)
must name a section that exists there; inside ``plugins/pmrobokassa/`` a bare ``§2.3`` means
``docs/robokassa.md`` too. Links between the Markdown documents must reach an existing file and heading.

Runs over the files git tracks; skipped outside a git checkout (an unpacked sdist, an installed wheel).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache, cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = {"robokassa": ROOT / "docs" / "robokassa.md", "design": ROOT / "docs" / "design.md"}

# What counts as pointing outside: the same search as the review's ``git grep -E``, plus a number after a
# hash sign in parentheses or after "issue", "PR" or "ticket". Written so that this file does not match.
OUTSIDE = [
    re.compile(r"\.\./shared/"),
    re.compile(r"(?:^|[^A-Za-z_])(?:DESIGN|ROBOKASSA|BILLMANAGER)\.md", re.MULTILINE),
    re.compile(r"\b[Ii]ssue [0-9]+\b"),
    re.compile(r"\(issue [0-9]+\)"),
    re.compile(r"\(#[0-9]+\)"),
    re.compile(r"\b(?:issue|pr|pull request|ticket)s? ?#[0-9]+", re.IGNORECASE),
]
EXCLUDED_SUFFIXES = (".po", ".pot")

# "docs/robokassa.md §6.1", "docs/design.md §3", "docs/robokassa.md §1.2, §2.2, §9", "… §6-§8"
CITATION = re.compile(r"docs/(robokassa|design)\.md((?:\s*(?:,|-|–|and)?\s*§[0-9]+(?:\.[0-9]+)*)+)")
SECTION_NUMBER = re.compile(r"§([0-9]+(?:\.[0-9]+)*)")
HEADING = re.compile(r"^#{2,6}[ \t]+([0-9]+(?:\.[0-9]+)*)\.?[ \t]", re.MULTILINE)
BARE_SECTION_SCOPE = "plugins/pmrobokassa/"  # where a bare "§N" cites docs/robokassa.md
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


@lru_cache(maxsize=1)
def tracked_files() -> tuple[str, ...]:
    """The paths git tracks in this checkout (relative, POSIX), or skip the test outside a checkout."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    try:
        top = subprocess.run([git, "-C", str(ROOT), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"git cannot run here: {exc}")
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip("not a git checkout of billcore")
    listed = subprocess.run([git, "-C", str(ROOT), "ls-files", "-z"], capture_output=True, timeout=60,
                            check=True)
    return tuple(name for name in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if name)


def text_of(relative: str) -> str | None:
    """A tracked file's text; None for a binary file (a NUL byte, as git decides) or one deleted locally."""
    try:
        data = (ROOT / relative).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data[:8000]:
        return None
    return data.decode("utf-8", "replace")


def text_files() -> list[tuple[str, str]]:
    """``(path, text)`` of every tracked text file except the translation catalogues."""
    found = []
    for relative in tracked_files():
        if relative.endswith(EXCLUDED_SUFFIXES):
            continue
        text = text_of(relative)
        if text is not None:
            found.append((relative, text))
    return found


def line_of(text: str, offset: int) -> tuple[int, str]:
    """1-based line number and the stripped line at ``offset``."""
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text.count("\n", 0, offset) + 1, text[start:end if end != -1 else len(text)].strip()


@cache
def sections(document: str) -> frozenset[str]:
    """The numbered sections of ``docs/<document>.md`` ("2", "2.3", …)."""
    return frozenset(HEADING.findall(DOCS[document].read_text(encoding="utf-8")))


def test_the_documents_have_numbered_sections():
    """The section check below means something only if the documents really are numbered."""
    tracked_files()  # the documents are part of a checkout, not of every copy of the tests
    assert {"1", "1.2", "2.2", "2.3", "2.4", "2.5", "2.6", "3", "4.1", "4.2", "5", "6.1", "6.2", "7.1", "8",
            "9", "10"} <= sections("robokassa")
    assert {"2", "3", "4", "6", "7"} <= sections("design")


def test_no_pointer_outside_the_repository():
    problems = []
    for relative, text in text_files():
        for pattern in OUTSIDE:
            for match in pattern.finditer(text):
                number, line = line_of(text, match.end() - 1)  # a match may start on the previous newline
                problems.append(f"{relative}:{number}: {line[:150]}")
    assert not problems, ("these lines point outside the repository; say it in docs/ instead:\n"
                          + "\n".join(sorted(set(problems))))


def cited_sections(relative: str, text: str):
    """Every ``(document, section, line number, line)`` cited in one file."""
    spans = []
    for match in CITATION.finditer(text):
        spans.append(match.span())
        number, line = line_of(text, match.start())
        for section in SECTION_NUMBER.findall(match.group(2)):
            yield match.group(1), section, number, line
    if relative.startswith(BARE_SECTION_SCOPE):
        for match in SECTION_NUMBER.finditer(text):
            if any(start <= match.start() < end for start, end in spans):
                continue  # part of a citation that names its document
            number, line = line_of(text, match.start())
            yield "robokassa", match.group(1), number, line


def test_cited_sections_exist():
    problems = []
    count = 0
    for relative, text in text_files():
        for document, section, number, line in cited_sections(relative, text):
            count += 1
            if section not in sections(document):
                problems.append(f"{relative}:{number}: docs/{document}.md has no §{section}: {line[:120]}")
    assert count >= 50, f"only {count} citations found: the search itself is broken"
    assert not problems, "\n".join(problems)


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lowercase, punctuation dropped, spaces as hyphens."""
    found = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*$", markdown, re.MULTILINE):
        found.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return found


def test_links_between_documents_resolve():
    problems = []
    for relative, text in text_files():
        if not relative.endswith(".md"):
            continue
        for match in MARKDOWN_LINK.finditer(text):
            target, _, fragment = match.group(1).partition("#")
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto: … are not ours to check
                continue
            path = (ROOT / relative).parent / target if target else ROOT / relative
            number, _line = line_of(text, match.start())
            if not path.exists():
                problems.append(f"{relative}:{number}: no file {target}")
            elif fragment and path.suffix == ".md" and fragment not in anchors(path.read_text(encoding="utf-8")):
                problems.append(f"{relative}:{number}: {target or relative} has no heading #{fragment}")
    assert not problems, "\n".join(problems)
