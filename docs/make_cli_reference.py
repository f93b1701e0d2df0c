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


def _method_flags(verb: str) -> list[str]:
    """`cadiff VERB --method M --help`'s group of M's flags, for every method of VERB but the default."""
    from cadiff.editing.methods import default_method, get_method, methods_for

    parts = []
    for method in methods_for(verb):
        if method == default_method(verb).name or get_method(method).starts_from:
            continue
        argv = [verb, "--method", method]
        help_text = dict(_subparsers(build_parser(argv)))[verb].format_help()
        group = help_text[help_text.index(f"--method {method}:"):].rstrip()
        parts += [f"### `cadiff {verb} --method {method}`", "", "```", group, "```", ""]
    return parts


def main() -> None:
    parts = ["# CLI reference", "", "Generated from the parser by `docs/make_cli_reference.py`; every command "
             "prints the same with `--help` (`erase` and `amplify` with the flags of the method `--method` "
             "names, listed after them).", ""]
    for name, parser in _walk(build_parser(), "cadiff"):
        parts += [f"## `{name}`", "", "```", parser.format_help().rstrip(), "```", ""]
        if name in ("cadiff erase", "cadiff amplify"):
            parts += _method_flags(name.split()[1])
    Path(__file__).with_name("cli.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
