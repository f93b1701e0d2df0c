"""The one entry point of the benchmarks: list them, run one, or rewrite doc sections from saved results.

    python bench/run.py list                     every benchmark, its name and what it measures
    python bench/run.py run NAME [ARGS ...]      run one (ARGS: its settings; `run NAME --help` lists them)
    python bench/run.py report [NAME ...]        rewrite the doc sections of all (or the named) benchmarks from their
                                                 JSON in bench/results/, measuring nothing (--figures: redraw the
                                                 pictures made from the results too)

A benchmark is a `Benchmark` subclass (bench/common.py) in any bench/*.py module; `common.py` and the
`*_common.py` helpers hold the shared plumbing. Heavy runs one at a time:
`flock /tmp/cadiff-heavy.lock .venv/bin/python bench/run.py run cad_erase`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Benchmark, Skip  # noqa: E402


def benchmarks() -> dict[str, Benchmark]:
    """Every benchmark of bench/*.py by name."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem in ("run", "common") or path.stem.endswith("_common"):
            continue
        module = importlib.import_module(path.stem)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Benchmark) and obj.__module__ == module.__name__ and obj.name:
                found[obj.name] = obj()
    return found


def report(found: dict[str, Benchmark], names: list[str], figures: bool) -> None:
    """Rewrite the section of every saved JSON of the named benchmarks whose section a doc holds."""
    for name in names:
        bench = found[name]
        args = bench.parser().parse_args(["--figures"] if figures else [])
        saved = bench.saved()
        if not saved:
            print(f"{name}: skipped, no saved results in bench/results/")
        for path in saved:
            args.doc = None
            try:
                bench.render_file(path, args, append=False)
                print(f"{name}: {path.name} -> {Path(args.doc).relative_to(HERE.parent)}")
            except Skip as why:
                print(f"{name}: {path.name} skipped: {why}")


def main(argv: list[str]) -> None:
    found = benchmarks()
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "list":
        width = max(map(len, found))
        for name, bench in found.items():
            print(f"{name:<{width}}  {bench.summary}")
    elif command == "run" and rest and rest[0] in found:
        found[rest[0]].main(rest[1:])
    elif command == "report" and all(n in found or n == "--figures" for n in rest):
        names = [n for n in rest if n != "--figures"]
        report(found, names or list(found), "--figures" in rest)
    else:
        unknown = [n for n in rest if n not in found and n != "--figures"]
        raise SystemExit(__doc__ + (f"\nunknown benchmark(s): {', '.join(unknown)}; see `list`" if unknown else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
