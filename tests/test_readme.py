"""The README is the user's manual: what it tells people to type must still work.

Every `gemstone` command line in its shell blocks is parsed by the real parser (a renamed
command or option fails here, not in a user's terminal), every `make` target it shows is a
rule of the Makefile, and every GEMSTONE_* variable it names is read by the code. It stays
a manual: at most MAX_LINES lines, with a table of contents whose links reach its headings.
No TensorFlow: gemstone.apps.cli builds its parser without it.
"""
import argparse
import ast
import contextlib
import io
import re
import shlex
from pathlib import Path
from typing import Dict, Iterator, List, Set

from gemstone.apps import checks, cli

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = (README, REPO / "docs" / "model.md")
MAX_LINES = 400  # issue #36: a manual people read, not a lab notebook (run logs go to bench/HISTORY.md)
CONTENTS = "Contents"
FIRST_SCREEN = 70  # lines: the contents are seen without scrolling far
SHELL_BLOCKS = ("sh", "bash", "shell", "console")  # console: only `$ ` lines are commands
OPERATORS = {"&&", "||", "|", ";", "&"}
CODE = ("gemstone", "components", "modules", "pipeline", "bench")
# The commands the manual's sections are about: each must be shown at least once.
MANUAL_COMMANDS = ("inspect-data", "serve", "batch-infer", "drift", "kubeflow compile", "kubeflow schedule")


# --- Reading Markdown -----------------------------------------------------------------------------

def code_blocks(text: str) -> Iterator[tuple]:
    """(info string, lines) of every fenced code block."""
    info, lines = None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if info is None:
                info, lines = line[3:].strip().lower(), []
            else:
                yield info, lines
                info = None
        elif info is not None:
            lines.append(line)


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    inside, kept = False, []
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def shell_lines(text: str) -> List[str]:
    """Command lines of the shell blocks, continuation lines joined."""
    found = []
    for info, lines in code_blocks(text):
        if info not in SHELL_BLOCKS:
            continue
        pending = ""
        for line in lines:
            if info == "console" and not pending:
                if not line.startswith("$ "):
                    continue  # the command's output
                line = line[2:]
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            found.append(pending + line)
            pending = ""
    return found


def commands(line: str) -> List[List[str]]:
    """The simple commands of a shell line (split at && | ; &), comments dropped, leading VAR=value dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    result, current = [], []
    for token in lexer:
        if token in OPERATORS:
            result.append(current)
            current = []
        else:
            current.append(token)
    result.append(current)
    assignment = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
    stripped = []
    for words in result:
        while words and assignment.match(words[0]):
            words = words[1:]
        if words:
            stripped.append(words)
    return stripped


def gemstone_commands(text: str) -> List[List[str]]:
    """The arguments of every `gemstone ...` / `.venv/bin/gemstone ...` command in the shell blocks."""
    return [words[1:] for line in shell_lines(text) for words in commands(line)
            if Path(words[0]).name == "gemstone"]


def make_targets_shown(text: str) -> Set[str]:
    """Targets of every `make ...` command in the shell blocks, their comments, and inline `make ...` spans."""
    shown = set()
    snippets = [words for line in shell_lines(text) for words in commands(line) if words[0] == "make"]
    spans = re.findall(r"`(make [^`]*)`", prose(text))
    spans += [m for line in shell_lines(text) if "#" in line
              for m in re.findall(r"\b(make [a-z][\w-]*)", line.split("#", 1)[1])]
    snippets += [shlex.split(span) for span in spans]
    for words in snippets:
        shown.update(w for w in words[1:] if not w.startswith("-") and "=" not in w)
    return shown


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped but - and _, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> Dict[str, str]:
    """anchor -> heading line, of every heading outside code blocks."""
    return {slug(line.lstrip("#")): line for line in prose(text).splitlines() if re.match(r"#{1,6} ", line)}


def contents_links(text: str) -> List[str]:
    """Anchors the contents list links to."""
    section = re.search(rf"^## {CONTENTS}\n(.*?)(?=^## )", prose(text), re.S | re.M)
    return re.findall(r"\]\(#([^)]+)\)", section.group(1)) if section else []


def variables_named(text: str) -> Set[str]:
    return set(re.findall(r"\bGEMSTONE_[A-Z0-9_]*[A-Z0-9]\b", text))


# --- Checks (each returns what is wrong; empty when all is well) -------------------------------------

def _strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """No abbreviated options: `--batch` must not pass for `--batch-size` after a rename."""
    parser.allow_abbrev = False
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its sub-parsers here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                _strict(sub)
    return parser


def parse_problem(argv: List[str]) -> str:
    """Why the real parser refuses these arguments, as `gemstone` would ("" when it takes them).

    As cli.main: unknown options are passed on only by commands that take extra arguments (batch-infer's
    Beam options), and checks.extra_options refuses what is a mistyped option of the command.
    """
    parser = _strict(cli.build_parser())
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args, extra = parser.parse_known_args(argv)
    except SystemExit:
        return errors.getvalue().strip().splitlines()[-1]
    if extra and not getattr(args, "takes_extra_args", False):
        return f"unrecognized arguments: {' '.join(extra)}"
    if extra:
        try:
            checks.extra_options(extra, cli.BATCH_OPTIONS)
        except checks.UsageError as e:
            return str(e)
    return ""


def command_problems(text: str) -> List[str]:
    return [f"gemstone {' '.join(argv)}: {problem}" for argv in gemstone_commands(text)
            for problem in [parse_problem(argv)] if problem]


def makefile_targets() -> Set[str]:
    rule = re.compile(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?!=)")
    targets = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        match = rule.match(line)
        if match:
            targets.update(match.group(1).split())
    return targets


def variables_read() -> Set[str]:
    """GEMSTONE_* names the code reads: whole string constants of the project's Python (not its tests),
    and $(NAME) in the Makefile."""
    files = [path for package in CODE for path in (REPO / package).rglob("*.py")
             if not (path.name.startswith("test_") or path.name.endswith("_test.py"))]
    files += [REPO / "conftest.py", REPO / "setup.py"]
    names = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    re.fullmatch(r"GEMSTONE_[A-Z0-9_]+", node.value):
                names.add(node.value)
    names.update(re.findall(r"\$[({](GEMSTONE_[A-Z0-9_]+)[)}]", (REPO / "Makefile").read_text()))
    return names


def contents_problems(text: str) -> List[str]:
    """Links to no heading, and sections after the contents that it leaves out."""
    anchors = headings(text)
    links = contents_links(text)
    problems = [f"no contents: a '## {CONTENTS}' list of links"] if not links else []
    problems += [f"contents link #{link} reaches no heading" for link in links if link not in anchors]
    after = headings(text.split(f"\n## {CONTENTS}\n", 1)[-1])
    problems += [f"section not in the contents: {line}" for anchor, line in after.items()
                 if line.startswith("## ") and anchor not in links]
    return problems


def link_problems(path: Path) -> List[str]:
    """Links to files that do not exist, and to anchors of this page that no heading has."""
    text = path.read_text()
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(text)):
        if "://" in target:
            continue
        file, _, anchor = target.partition("#")
        if file and not (path.parent / file).exists():
            problems.append(f"{path.relative_to(REPO)}: link to missing {file}")
        if not file and anchor not in headings(text):
            problems.append(f"{path.relative_to(REPO)}: link to missing heading #{anchor}")
    return problems


# --- Tests ----------------------------------------------------------------------------------------

def test_the_readme_is_a_manual_of_at_most_400_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; run logs belong in bench/HISTORY.md"


def test_the_contents_come_first_and_reach_every_section():
    text = README.read_text()
    first = text.splitlines()[:FIRST_SCREEN]
    assert f"## {CONTENTS}" in first
    assert "make demo" in "\n".join(first) and "make test" in "\n".join(first)
    assert contents_problems(text) == []


def test_links_reach_files_and_headings_that_exist():
    assert [problem for path in DOCS for problem in link_problems(path)] == []


def test_every_gemstone_command_shown_parses():
    text = README.read_text()
    shown = {" ".join(argv[:2]) if argv[0] == "kubeflow" else argv[0] for argv in gemstone_commands(text)}
    assert set(MANUAL_COMMANDS) <= shown, f"the README shows no {sorted(set(MANUAL_COMMANDS) - shown)} command"
    assert command_problems(text) == []


def test_every_make_target_shown_exists():
    shown = make_targets_shown(README.read_text())
    assert {"demo", "test", "run"} <= shown
    assert shown - makefile_targets() == set()


def test_every_gemstone_variable_named_is_read_by_the_code():
    named = variables_named(README.read_text())
    assert {"GEMSTONE_PROFILE", "GEMSTONE_MAX_FLAGGED_KNOWN"} <= named
    assert named - variables_read() == set()


def test_the_checks_can_fail():
    broken = "\n".join([
        "# Manual", "", f"## {CONTENTS}", "", "- [Serving](#serving)", "- [Gone](#gone)", "",
        "## Serving", "", "## Unlisted", "",
        "```sh",
        ".venv/bin/gemstone serve --model m --prot 8501",       # a misspelt option
        "gemstone batch-infer --model m --input i --output o --batch_size 8",  # not a Beam option: a typo of ours
        "gemstone batch-infer --model m --input i --output o --runner=DataflowRunner",  # a Beam option: fine
        "gemstone inspect-data d --out report",                  # an abbreviation of --output
        "GEMSTONE_HOME=/x gemstone classify photo.jpg  # make nowhere",  # no such command, no such target
        "gemstone report --pipeline-name p && make demo",
        "```", "",
        "```console", "$ gemstone where --pipeline gem88", "gemstone where: error: an output line", "```", "",
        "Set `GEMSTONE_NO_SUCH_SETTING=1` and `GEMSTONE_HOME`, then `make nonsense`.",
    ])
    problems = command_problems(broken)
    assert [p.split(":")[0] for p in problems] == [
        "gemstone serve --model m --prot 8501",
        "gemstone batch-infer --model m --input i --output o --batch_size 8",
        "gemstone inspect-data d --out report",
        "gemstone classify photo.jpg",
        "gemstone where --pipeline gem88"]
    assert make_targets_shown(broken) - makefile_targets() == {"nowhere", "nonsense"}
    assert variables_named(broken) - variables_read() == {"GEMSTONE_NO_SUCH_SETTING"}
    assert contents_problems(broken) == ["contents link #gone reaches no heading",
                                         "section not in the contents: ## Unlisted"]
    assert slug("## The `gemstone` command line".lstrip("#")) == "the-gemstone-command-line"
