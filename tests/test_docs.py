"""The documentation stays true: every command and option of ``ann2snn`` is in docs/cli.md (and
nothing there is stale), every ``ann2snn ...`` command line in the docs names real options, the
Python examples of README.md and docs/*.md run as doctests, and every relative link resolves."""

from __future__ import annotations

import doctest
import io
import re
import shlex
from pathlib import Path

import click
import pytest

from ann2snn.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLI_DOC = ROOT / "docs" / "cli.md"
FENCE = re.compile(r"^```(\w*)\s*$")
COMMAND_HEADING = re.compile(r"^(#{2,6}) `(ann2snn(?: [\w-]+)*)`")
HEADING = re.compile(r"^(#{1,6}) ")
TABLE_FLAG = re.compile(r"^\| `(--[\w-]+)")
SKIP_MARK = re.compile(r"^<!-- not run: .+ -->$")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------------------ Markdown parsing
def code_blocks(text: str) -> list[tuple[str, int, list[str], str]]:
    """``(language, first line number of the code, code lines, the line before the fence)``."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match and match[1]:
            start = i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].strip() == "```")
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            blocks.append((match[1], start + 1, lines[start:end], before.strip()))
            i = end
        i += 1
    return blocks


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (code blocks become empty lines)."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            out.append("")
        else:
            out.append("" if inside else line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings (a repeated heading gets ``-1``, ``-2``, ...)."""
    found, counts = set(), {}
    for line in prose_lines(path.read_text()):
        if HEADING.match(line):
            base = slug(HEADING.sub("", line, count=1))
            found.add(base if base not in counts else f"{base}-{counts[base]}")
            counts[base] = counts.get(base, 0) + 1
    return found


# ----------------------------------------------------------------------------------- the CLI
def commands(group: click.Group, path: tuple[str, ...] = ("ann2snn",)):
    """Every command path (``ann2snn``, ``ann2snn plot``, ``ann2snn plot accuracy``, ...)."""
    yield " ".join(path), group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


COMMANDS = dict(commands(main))


def long_flags(command: click.Command) -> set[str]:
    return {
        flag
        for param in command.params
        if isinstance(param, click.Option)
        for flag in (*param.opts, *param.secondary_opts)
        if flag.startswith("--") and flag != "--help"
    }


def cli_sections() -> dict[str, list[str]]:
    """docs/cli.md's text under each command heading (up to the next command heading, or the
    next heading of the same or a higher level)."""
    lines = prose_lines(CLI_DOC.read_text())
    sections: dict[str, list[str]] = {}
    current, level = None, 0
    for line in lines:
        command, heading = COMMAND_HEADING.match(line), HEADING.match(line)
        if command:
            current, level = command[2], len(command[1])
            sections[current] = []
        elif heading and len(heading[1]) <= level:
            current = None
        elif current is not None:
            sections[current].append(line)
    return sections


def test_every_command_and_option_is_in_the_cli_reference():
    sections = cli_sections()
    missing = [f"a section '## `{path}`'" for path in COMMANDS if path not in sections]
    stale = [f"section `{path}`: no such command" for path in sections if path not in COMMANDS]
    for path, command in COMMANDS.items():
        text = sections.get(path, [])
        documented = {m[1] for line in text if (m := TABLE_FLAG.match(line))} - {"--help"}
        missing += [f"`{path}`: option {flag}" for flag in sorted(long_flags(command) - documented)]
        stale += [f"`{path}`: option {flag} does not exist" for flag in sorted(documented - long_flags(command))]
        for param in command.params:
            if isinstance(param, click.Argument) and f"`{param.human_readable_name}`" not in "\n".join(text):
                missing.append(f"`{path}`: argument `{param.human_readable_name}`")
    assert not missing, f"{_rel(CLI_DOC)} lacks (in its option tables, first column):\n" + "\n".join(missing)
    assert not stale, f"{_rel(CLI_DOC)} documents what the CLI does not have:\n" + "\n".join(stale)


def command_lines(page: Path):
    """``(line number, argv)`` of each ``ann2snn ...`` invocation in the page's shell blocks and
    inline code (``&&``, ``|`` and ``;`` separate invocations; ``\\`` continues a line)."""
    text = page.read_text()
    for language, first, lines, _ in code_blocks(text):
        if language not in ("bash", "sh", "console"):
            continue
        joined = "\n".join(lines).replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            yield first + offset, line
    for number, line in enumerate(prose_lines(text), 1):
        for match in re.finditer(r"`(ann2snn [^`]+)`", line):
            yield number, match[1]


def invocations(line: str):
    tokens = shlex.split(line, comments=True)
    group: list[str] = []
    for token in [*tokens, ";"]:
        if token in ("&&", "||", "|", ";"):
            if "ann2snn" in group:
                yield group[group.index("ann2snn") :]
            group = []
        else:
            group.append(token)


def resolve(argv: list[str]) -> tuple[str, click.Command, list[str]]:
    command, path, rest = main, ["ann2snn"], argv[1:]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest[0]]
        path.append(rest.pop(0))
    return " ".join(path), command, rest


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_command_lines_in_the_docs_use_real_options(page):
    wrong = []
    for number, line in command_lines(page):
        for argv in invocations(line):
            path, command, rest = resolve(argv)
            flags = long_flags(command) | {"--help"}
            wrong += [f"line {number}: {path} has no option {t}" for t in rest if t.startswith("--") and t not in flags]
    assert not wrong, f"{_rel(page)}:\n" + "\n".join(wrong)


# --------------------------------------------------------------------------- runnable examples
def doctest_text(page: Path) -> str:
    """The page with everything blanked but its ``python`` blocks that start with ``>>>``, so
    that doctest's line numbers are the page's."""
    lines = page.read_text().splitlines()
    kept = [""] * len(lines)
    for language, first, code, _ in code_blocks(page.read_text()):
        if language == "python" and code and code[0].startswith(">>>"):
            kept[first - 1 : first - 1 + len(code)] = code
    return "\n".join(kept) + "\n"


DOCTEST_PAGES = [page for page in PAGES if doctest_text(page).strip()]


def test_the_pages_with_examples_are_collected():
    names = {page.name for page in DOCTEST_PAGES}
    assert {"README.md", "method.md", "simulation.md", "nir.md", "python-api.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_python_block_runs_or_says_why_not(page):
    silent = [
        f"line {first}: a python block that is neither a doctest (>>>) nor marked <!-- not run: why -->"
        for language, first, code, before in code_blocks(page.read_text())
        if language == "python" and not (code and code[0].startswith(">>>")) and not SKIP_MARK.match(before)
    ]
    assert not silent, f"{_rel(page)}:\n" + "\n".join(silent)


@pytest.mark.parametrize("page", DOCTEST_PAGES, ids=_rel)
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write files in the current directory
    test = doctest.DocTestParser().get_doctest(doctest_text(page), {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    runner.run(test, out=report.write)
    assert test.examples, f"{_rel(page)} has no examples"
    assert runner.failures == 0, f"{_rel(page)}: {runner.failures} example(s) failed\n{report.getvalue()}"


# ------------------------------------------------------------------------------------- links
def links(page: Path):
    for number, line in enumerate(prose_lines(page.read_text()), 1):
        for match in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", line):
            target = match[1]
            if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                yield number, target


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    broken = []
    for number, target in links(page):
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        if not path.exists():
            broken.append(f"line {number}: {target}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"line {number}: {target}: no heading #{anchor} in {path.name}")
    assert not broken, f"{_rel(page)}:\n" + "\n".join(broken)
