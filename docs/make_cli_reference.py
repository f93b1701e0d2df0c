"""Regenerate docs/cli.md from the argument parser, so the reference always says what the code does.

Run: .venv/bin/python docs/make_cli_reference.py
"""

import argparse
from pathlib import Path

from cadiff.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _walk(parser: argparse.ArgumentParser, prefix: str):
    yield prefix, parser
    for name, sub in _subparsers(parser):
        yield from _walk(sub, f"{prefix} {name}")


def main() -> None:
    parts = ["# CLI reference", "", "Generated from the parser by `docs/make_cli_reference.py`; every command "
             "prints the same with `--help`.", ""]
    for name, parser in _walk(build_parser(), "cadiff"):
        parts += [f"## `{name}`", "", "```", parser.format_help().rstrip(), "```", ""]
    Path(__file__).with_name("cli.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
