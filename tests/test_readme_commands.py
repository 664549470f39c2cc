"""Every command the README (and the docs) show is accepted by the script it runs: each `--flag` written in a command
block parses with that script's own parser (`build_parser`), `accelerate launch`'s flags with accelerate's."""

from __future__ import annotations

import importlib
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md", "docs/data.md", "benchmarks/README.md", "docs/miniature/README.md"]


def commands(document: str) -> list[str]:
    """The commands of a markdown file's bash blocks: continuation lines joined, comments and `[optional]` brackets
    removed (an optional part is still a part to check)."""
    text = open(os.path.join(ROOT, document), encoding="utf-8").read()
    found = []
    for block in re.findall(r"^```(?:bash|sh)\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).replace("[", "").replace("]", "").strip()
            if line:
                found.append(line)
    return found


def script_and_arguments(tokens: list[str]) -> tuple[str, list[str], list[str]] | None:
    """`(module, its arguments, accelerate launch's arguments)` of a command that runs one of the project's scripts."""
    launch: list[str] = []
    if tokens[:2] == ["accelerate", "launch"]:
        rest = tokens[2:]
        at = next(i for i, t in enumerate(rest) if t.endswith(".py") or t in ("-m", "--module"))
        launch, tokens = rest[:at], ["python", *rest[at:]]
    if tokens[0] not in ("python", "python3"):
        return None
    if tokens[1] == "-m":
        return tokens[2], tokens[3:], launch
    if tokens[1].endswith(".py"):
        return tokens[1][: -len(".py")].replace("/", "."), tokens[2:], launch
    return None


CASES = [
    pytest.param(document, command, id=f"{document}: {command[:60]}")
    for document in DOCUMENTS
    for command in commands(document)
    if script_and_arguments(shlex.split(command)) is not None
]


def test_the_documents_show_commands_to_check():
    assert len(CASES) >= 20


@pytest.mark.parametrize(("document", "command"), CASES)
def test_every_documented_flag_is_accepted_by_its_script(document, command):
    module, arguments, launch = script_and_arguments(shlex.split(command))
    if launch:
        from accelerate.commands.launch import launch_command_parser

        _, unknown = launch_command_parser().parse_known_args([*launch, "script.py"])
        assert not unknown, f"{document}: accelerate launch does not take {unknown}"
    if module == "quickstart":
        from quickstart import JOBS

        assert arguments[0] in JOBS, f"{document}: quickstart has no job {arguments[0]!r}"
        return
    parser = importlib.import_module(module).build_parser()
    parser.allow_abbrev = False  # a flag is written out in full, not as a prefix argparse would accept
    if module == "training.sft" and "--config" in arguments:  # TRL reads the recipe itself; its flags are argparse's
        at = arguments.index("--config")
        assert os.path.isfile(os.path.join(ROOT, arguments[at + 1])), f"{document}: no recipe {arguments[at + 1]}"
        arguments = arguments[:at] + arguments[at + 2 :]
    _, unknown = parser.parse_known_args(arguments)
    assert not unknown, f"{document}: `{command}` passes {unknown}, which {module} does not take"
