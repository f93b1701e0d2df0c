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


def render() -> str:
    """The page, at argparse's width of 80 columns whatever the terminal (so the check is the same everywhere)."""
    import os

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        return _render()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _render() -> str:
    parts = ["# CLI reference", "", "Generated from the parser by `docs/make_cli_reference.py`; every command "
             "prints the same with `--help` (`erase` and `amplify` with the flags of the method `--method` "
             "names, listed after them).", ""]
    for name, parser in _walk(build_parser(), "cadiff"):
        parts += [f"## `{name}`", "", "```", parser.format_help().rstrip(), "```", ""]
        if name in ("cadiff erase", "cadiff amplify"):
            parts += _method_flags(name.split()[1])
    return "\n".join(parts)


CLI = Path(__file__).with_name("cli.md")


def main() -> int:
    """Write docs/cli.md; with --check, exit 1 when the committed page is not what the parser gives now."""
    import sys

    if "--check" in sys.argv[1:]:
        if not CLI.exists() or CLI.read_text() != render():
            print("docs/cli.md is stale; run .venv/bin/python docs/make_cli_reference.py")
            return 1
        return 0
    CLI.write_text(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
