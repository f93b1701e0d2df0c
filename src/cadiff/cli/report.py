"""`cadiff report RUN [RUN ...] --out report.html`: one self-contained HTML page for run folders (pictures
inlined, no network); several runs side by side. Every command that writes a run folder also writes its own
`report.html` (`write_run_report`).

Example:
    $ cadiff report runs/no-circle runs/esd-circle --out compare.html
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub, argv=()) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page for run folders (several: side by side)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by cadiff commands")
    p.add_argument("--out", required=True, help="the HTML file to write (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=run, writes_report=False)


def run(args: argparse.Namespace) -> int:
    from cadiff.report.html import write_report

    write_report(args.runs, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return 0


def write_run_report(args: argparse.Namespace) -> Path | None:
    """After a command that wrote a run folder (`--out` holding run.json): its report.html, path printed."""
    from cadiff.report.html import REPORT, write_report

    out = getattr(args, "out", None)
    if not out or not getattr(args, "writes_report", True) or not (Path(out) / "run.json").is_file():
        return None
    path = write_report([out], Path(out) / REPORT, overwrite=True)
    print(f"report: {path}")
    return path
