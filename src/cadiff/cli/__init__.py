"""The `cadiff` command: a thin layer over the Python API, one module per group of verbs.

Example:
    $ cadiff generate "a red striped circle" -n 8 --seed 0 --out runs/red-circle
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from typing import Iterator

from cadiff._version import __version__
from cadiff.cli.common import GOAL_NOT_MET, NOT_PROVEN, peek_flag, replay_defaults, report_error, report_os_error
from cadiff.distributed import is_main, launched_world, process_group
from cadiff.errors import BadInput, CadiffError

# Each module defines `register(subparsers)`; its commands set `func(args) -> int`.
COMMAND_MODULES = ["generate", "shapes", "demo", "cad", "export", "evaluate", "sae", "attack", "report"]
# Commands that run on several processes (each rank takes its share of the trajectories and images; rank 0 writes)
MULTI_PROCESS = ("generate", "attribute", "erase", "amplify", "attack", "harden", "evaluate", "sae collect")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to read more, not the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that unfinished outputs are removed on the way out."""


def _raise_terminated(signum, frame):
    raise Terminated()


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for command line `argv`, which may choose flags: `--method` picks the edit method's."""
    parser = Parser(prog="cadiff", description="Find where a diffusion model keeps a concept, and edit it there.")
    parser.add_argument("--version", action="version", version=f"cadiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"cadiff.cli.{name}").register(sub, argv or [])
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line parsed; with `--settings RUN/run.json`, the recorded run's settings are the defaults (its
    method too, unless --method is given)."""
    settings = peek_flag(argv, "--settings")
    if settings is None:
        return build_parser(argv).parse_args(argv)
    parser = build_parser(argv)
    extra = replay_defaults(parser, argv, settings)
    if extra and peek_flag(argv, "--method") is None:
        argv = [*argv, *extra]
        parser = build_parser(argv)
        replay_defaults(parser, argv, settings)
    return parser.parse_args(argv)


def _quiet_libraries() -> None:
    """cadiff shows its own progress bars; the libraries' loading bars and notices would bury them."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


@contextlib.contextmanager
def _main_speaks() -> Iterator[None]:
    """Past one process, only rank 0 prints what a command did (every rank's errors still reach stderr)."""
    if is_main():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(argv)
    except CadiffError as exc:
        return report_error(exc)
    _quiet_libraries()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        command = " ".join(filter(None, (args.command, getattr(args, "sae_command", None))))
        if launched_world() > 1 and command not in MULTI_PROCESS:
            raise BadInput(f"cadiff {command} runs in one process; {', '.join(MULTI_PROCESS)} run on several "
                           "(torchrun, accelerate launch)")
        with process_group(getattr(args, "device", "cpu")), _main_speaks():
            main = is_main()  # (known while the process group is up)
            code = int(args.func(args) or 0)
        if code in (0, GOAL_NOT_MET, NOT_PROVEN) and main:
            from cadiff.cli.report import write_run_report

            write_run_report(args)
        return code
    except CadiffError as exc:  # the user's to fix: one line; anything else is a bug and keeps its traceback
        return report_error(exc)
    except OSError as exc:
        if exc.errno is None:  # raised without the system's reason: a bug, not an unwritable place
            raise
        return report_os_error(exc)  # an unwritable or vanished place, a full disk: the system's reason, one line
    except (KeyboardInterrupt, Terminated) as exc:
        signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM
        print(f"cadiff: interrupted ({signal.Signals(signum).name}); unfinished outputs were removed, finished ones "
              "kept (evaluate and sae collect continue where they stopped when run again)", file=sys.stderr)
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
