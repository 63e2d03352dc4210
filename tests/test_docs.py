"""Every code block in the documentation runs as written, and every relative link resolves.

The blocks come from README.md, CONTRIBUTING.md, benchmarks/README.md and docs/*.md:

- ```python: a complete program, run by a fresh interpreter in an empty temporary folder.
- ```bash / ```sh: a script, run by ``bash -eo pipefail`` in an empty temporary folder.
- ```console: each ``$ `` line is a command (a trailing ``\\`` continues it), run in order by
  one bash in an empty temporary folder, stderr merged into stdout as a terminal shows it;
  the lines after a command are its output, and they must match.
- ```text right after ``<!-- output -->``: what the python or bash block before it prints.
- ```text and ```env otherwise: data, never run. A fence without a language is an error.
- ``<!-- not-run: REASON -->`` right before a block: the block is not run; REASON is required.

In expected output a line ``...`` stands for any number of lines and ``...`` inside a line for
any text. Blocks that use Azure (``AzureBlobAdapter``, ``AZURE_CONN_STR``, ``--azure``,
``azure:``) are marked ``azure`` and run against the session's Azurite with AZURE_CONN_STR (its
connection string) and AZURE_CONTAINER (a fresh container) in the environment; without Azurite
they skip, unless AZURITE_REQUIRED=1. Every block runs this checkout: PYTHONPATH is the
repository, and ``python`` and ``asyncblobdict`` on PATH are this interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [
        REPO / "README.md",
        REPO / "CONTRIBUTING.md",
        REPO / "benchmarks" / "README.md",
        *(REPO / "docs").glob("*.md"),
    ]
)
RUNNABLE = {"python", "bash", "sh", "console"}
DATA = {"text", "env"}
README_LIMIT = 20 * 1024  # the repository's hook refuses a larger README
TIMEOUT = 120

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<lang>[^`\s]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<name>not-run|output)\s*(?::(?P<reason>.*?))?\s*-->\s*$")
_STEP = "@@@ asyncblobdict docs step "
_AZURE = re.compile(r"AzureBlobAdapter|AZURE_CONN_STR|--azure\b|\bazure:")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None = None  # the reason, when marked not-run
    is_output: bool = False
    expected: str | None = None  # filled in from a following <!-- output --> block

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and self.not_run is None

    @property
    def azure(self) -> bool:
        return _AZURE.search(self.code) is not None


def parse(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, with their markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    markers: list[re.Match[str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        marker = _MARKER.match(line)
        if marker:
            markers.append(marker)
        elif fence:
            indent, mark, start = len(fence["indent"]), fence["fence"], i + 1
            body: list[str] = []
            i += 1
            while i < len(lines) and not (
                lines[i].strip().startswith(mark) and set(lines[i].strip()) == {mark[0]}
            ):
                body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
                i += 1
            block = Block(path, start, fence["lang"], "\n".join(body) + "\n")
            for m in markers:
                if m["name"] == "not-run":
                    block.not_run = (m["reason"] or "").strip()
                else:
                    block.is_output = True
            blocks.append(block)
            markers = []
        elif line.strip():
            markers = []
        i += 1
    # An output block belongs to the program or script run last before it.
    last: Block | None = None
    for block in blocks:
        if block.is_output:
            if last is not None and last.expected is None:
                last.expected = block.code
        elif block.runs and block.lang in ("python", "bash", "sh"):
            last = block
    return blocks


BLOCKS = [block for path in DOCS if path.exists() for block in parse(path)]


def _params() -> list[object]:
    return [
        pytest.param(b, id=b.name, marks=[pytest.mark.azure] if b.azure else [])
        for b in BLOCKS
        if b.runs
    ]


# ------------------------------------------------------------------------------ matching


def _pattern(expected: str) -> re.Pattern[str]:
    parts = []
    for line in expected.rstrip("\n").split("\n"):
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(p) for p in line.rstrip().split("...")) + r"\n")
    return re.compile("".join(parts))


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` fits ``expected`` (``...`` wildcards, trailing spaces ignored)."""
    text = "".join(line.rstrip() + "\n" for line in actual.rstrip("\n").split("\n"))
    if not actual.strip():
        text = ""
    if not expected.strip():
        return text == ""
    return _pattern(expected).fullmatch(text) is not None


# ------------------------------------------------------------------------------- running


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """What a user's shell would have: this interpreter as ``python``, the CLI on PATH."""
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, command in (
        ("python", f'exec "{sys.executable}" "$@"'),
        ("python3", f'exec "{sys.executable}" "$@"'),
        ("asyncblobdict", f'exec "{sys.executable}" -m asyncblobdict "$@"'),
    ):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\n{command}\n")
        shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "PYTHON"))}
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None) -> str:
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"exit code {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def _console(block: Block) -> tuple[str, list[tuple[str, str]]]:
    """A bash script for a console block, and its (command, expected output) pairs."""
    steps: list[tuple[str, list[str]]] = []
    continued = False
    for line in block.code.rstrip("\n").split("\n"):
        if continued:
            steps[-1] = (steps[-1][0] + "\n" + line, steps[-1][1])
        elif line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"{block.name}: output before the first '$ ' command"
            steps[-1][1].append(line)
            continue
        continued = line.endswith("\\")
    script = ["set -eo pipefail", "exec 2>&1"]
    for n, (command, _) in enumerate(steps):
        # On a line of its own even after output without a final newline.
        script += [f"printf '\\n{_STEP}{n}\\n'", command]
    return "\n".join(script) + "\n", [(c, "\n".join(out)) for c, out in steps]


@pytest.mark.parametrize("block", _params())
def test_block_runs_as_written(
    block: Block, tmp_path: Path, environment: dict[str, str], request: pytest.FixtureRequest
) -> None:
    env = dict(environment)
    if block.azure:
        azurite = request.getfixturevalue("azurite")
        env["AZURE_CONN_STR"] = azurite.connection_string
        env["AZURE_CONTAINER"] = "doc-" + uuid.uuid4().hex[:12]
    cwd = tmp_path / "work"
    cwd.mkdir()
    if block.lang == "python":
        program = tmp_path / "program.py"
        program.write_text(block.code, encoding="utf-8")
        out = _run([sys.executable, str(program)], cwd, env)
    elif block.lang in ("bash", "sh"):
        out = _run(["bash", "-eo", "pipefail", "-s"], cwd, env, stdin=block.code)
    else:
        script, steps = _console(block)
        out = _run(["bash", "-s"], cwd, env, stdin=script)  # a failure shows the step markers
        outputs = re.split(rf"\n{_STEP}\d+\n", out)[1:]
        for (command, expected), actual in zip(steps, outputs, strict=True):
            assert matches(expected, actual), (
                f"$ {command}\n--- expected\n{expected}\n--- got\n{actual}"
            )
        return
    if block.expected is not None:
        assert matches(block.expected, out), f"--- expected\n{block.expected}\n--- got\n{out}"


# ------------------------------------------------------------------------ the rules above


def test_every_block_runs_or_says_why_not() -> None:
    problems = []
    for block in BLOCKS:
        if block.lang not in RUNNABLE | DATA:
            problems.append(f"{block.name}: language {block.lang!r} (use one of {RUNNABLE | DATA})")
        elif block.not_run == "":
            problems.append(f"{block.name}: <!-- not-run --> without a reason")
        elif block.is_output and block.lang != "text":
            problems.append(f"{block.name}: an <!-- output --> block must be ```text")
    assert problems == []
    assert sum(b.runs for b in BLOCKS) >= 20


def test_output_blocks_follow_a_program() -> None:
    claimed = sum(b.expected is not None for b in BLOCKS)
    assert claimed == sum(b.is_output for b in BLOCKS), "an <!-- output --> block has no program"


def test_every_expected_output_can_fail() -> None:
    """No expected output in the docs is so loose that any output fits it: a program that
    printed nothing, or something else, would fail its block."""
    # The rules CONTRIBUTING.md states, which the refusals below rely on.
    assert matches("a\n...\nd\n", "a\nb\nc\nd\n")
    assert matches("a\n...\nb\n", "a\nb\n")
    assert matches("x = ...!\n", "x = 42!\n")
    assert not matches("a\nb\n", "a\nc\n")
    assert not matches("", "something\n")
    assert matches("", "")
    expected = [(b.name, b.expected) for b in BLOCKS if b.runs and b.expected is not None]
    for block in BLOCKS:
        if block.runs and block.lang == "console":
            expected += [(f"{block.name} $ {c}", out) for c, out in _console(block)[1] if out]
    assert len(expected) >= 20
    loose = [
        name
        for name, output in expected
        if matches(output, "") or matches(output, "@@ not what the docs show @@\n")
    ]
    assert loose == []


# --------------------------------------------------------------------------------- links

_LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE = re.compile(r"^ *(`{3,}|~{3,}).*?^ *\1", re.S | re.M)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    text = _CODE.sub("", path.read_text(encoding="utf-8"))
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def _links(path: Path) -> list[tuple[str, str]]:
    text = _CODE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", lambda m: m[0] if "](" in m[0] else "", text)
    return [(m["text"], m["target"]) for m in _LINK.finditer(text)]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for text, target in _links(path):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"[{text}]({target}): no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"[{text}]({target}): no heading #{anchor} in {dest.name}")
        elif "::" in text:
            # [tests/x.py::test_name](tests/x.py) names a test: it must exist in that file.
            name = text.strip("`").split("::")[-1].split("[")[0]
            source = dest.read_text(encoding="utf-8")
            if not re.search(rf"^\s*(async )?def {re.escape(name)}\(", source, flags=re.M):
                broken.append(f"[{text}]({target}): no test {name} in {file_part}")
    assert broken == []


# ----------------------------------------------------------------------- the README itself


def test_readme_stays_short() -> None:
    assert (REPO / "README.md").stat().st_size <= README_LIMIT


@pytest.mark.parametrize(
    ("example", "page"), [("local_example.py", "README.md"), ("azure_example.py", "docs/azure.md")]
)
def test_the_original_examples_are_shown_unchanged(example: str, page: str) -> None:
    original = (REPO / "tests" / "original_readme" / example).read_text(encoding="utf-8")
    body = original.split("\n", 1)[1]  # after the provenance comment
    shown = [b.code for b in BLOCKS if b.path == REPO / page and b.runs]
    assert body in shown
