"""Regenerate docs/api.md from the docstrings, so the reference always says what the code does.

Per public module: the first paragraph of its docstring, then per public name (its `__all__`, in that order) the
signature, a config's fields with their defaults and help, and the docstring. Each object is written out once, in
the module it belongs to; the other modules that export it (the top-level `cadiff` among them) link to it.

Run: .venv/bin/python docs/make_api_reference.py
     .venv/bin/python docs/make_api_reference.py --check   # exit 1 if docs/api.md is stale or a name has no docstring
(tests/test_api_reference.py runs the check, so `make test` fails on a stale reference.)
"""

import argparse
import dataclasses
import difflib
import importlib
import inspect
import re
import sys
from pathlib import Path

API = Path(__file__).with_name("api.md")

# The public modules, in the order of the page. None: the module's `__all__` (a module without one: the classes and
# functions it defines); a tuple: those names (the method modules' configs, the hardening, the judges that erase's
# `judge=` takes).
MODULES = (
    ("cadiff", None),
    ("cadiff.models", None),
    ("cadiff.attribution", None),
    ("cadiff.editing", None),
    ("cadiff.editing.methods", None),
    ("cadiff.editing.methods.cad", ("CADConfig",)),
    ("cadiff.editing.methods.esd", ("ESDConfig",)),
    ("cadiff.editing.methods.prune", ("PruneConfig",)),
    ("cadiff.editing.methods.magnitude", ("MagnitudeConfig",)),
    ("cadiff.editing.methods.cadtrain", ("CADTrainConfig",)),
    ("cadiff.exports", None),
    ("cadiff.exports.peft", ("attach",)),
    ("cadiff.calibration", None),
    ("cadiff.attacks", None),
    ("cadiff.attacks.defence", ("HardenConfig", "harden")),
    ("cadiff.evaluation", None),
    ("cadiff.evaluation.judges", ("Judge", "as_judge", "get_judge")),
    ("cadiff.sae", None),
    ("cadiff.worlds", None),
)
CONFIG_BASE = "cadiff.config.Config"  # its methods are written once, in the page's introduction


class _Annotation:
    """A string annotation (`from __future__ import annotations`) shown as written, without quotes."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _annotation(annotation) -> str:
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _signature(obj) -> str | None:
    """`obj`'s signature as written in its source (string annotations unquoted); None where it has none."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None

    def plain(a):
        return _Annotation(a) if isinstance(a, str) else a

    params = [p.replace(annotation=plain(p.annotation)) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=plain(sig.return_annotation)))


def _own_doc(obj) -> str | None:
    """The docstring `obj` itself has: not inherited, not the one @dataclass makes up from the fields."""
    if inspect.ismethod(obj):
        obj = obj.__func__
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        if doc and dataclasses.is_dataclass(obj) and doc.startswith(obj.__name__ + "("):
            return None
    elif callable(obj):
        doc = getattr(obj, "__doc__", None)
    else:
        return None
    return inspect.cleandoc(doc) if doc and doc.strip() else None


def _documentable(obj) -> bool:
    """Whether a name's object can carry a docstring (a class or a function, not a constant)."""
    return inspect.isclass(obj) or inspect.isroutine(obj)


def public_names(module_name: str, names) -> list[str]:
    """The public names of a module, in order: `names`, else its `__all__`, else the classes and functions it
    defines (leading underscore excepted)."""
    module = importlib.import_module(module_name)
    if names is not None:
        return list(names)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, o in vars(module).items() if not n.startswith("_") and _documentable(o)
            and getattr(o, "__module__", None) == module_name]


def _entries() -> list[tuple[str, str, object]]:
    """(module, name, object) for every public name of every module, in page order."""
    return [(m, n, getattr(importlib.import_module(m), n)) for m, names in MODULES for n in public_names(m, names)]


def _homes(entries) -> dict[int, str]:
    """Where each object is written out: of the modules exporting it, the one nearest where it is defined (the
    longest shared dotted prefix; the top-level `cadiff` only if nothing else exports it; then page order)."""
    exporters: dict[int, list[str]] = {}
    for module, _, obj in entries:
        if _documentable(obj):
            exporters.setdefault(id(obj), []).append(module)

    def nearness(module: str, defined: str) -> int:
        a, b = module.split("."), defined.split(".")
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    homes = {}
    for module, _, obj in entries:
        if _documentable(obj) and id(obj) not in homes:
            defined = getattr(obj, "__module__", "") or ""
            candidates = [m for m in exporters[id(obj)] if m != "cadiff"] or ["cadiff"]
            homes[id(obj)] = max(candidates, key=lambda m: (nearness(m, defined), -candidates.index(m)))
    return homes


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def _first_paragraph(doc: str | None) -> str:
    return (doc or "").split("\n\n")[0].strip()


def _module_paragraph(doc: str | None) -> str:
    """A module docstring's first paragraph (with the next one where it ends on a colon, which introduces it)."""
    paragraphs = (doc or "").strip().split("\n\n")
    return "\n\n".join(paragraphs[:2] if paragraphs[0].rstrip().endswith(":") else paragraphs[:1])


def _summary(doc: str | None) -> str:
    """The first sentence of a docstring, on one line."""
    text = " ".join(_first_paragraph(doc).split())
    match = re.search(r"(?<=[.!?])\s+(?=[A-Z`(])", text)
    return _prose(text[:match.start()] if match else text)


def _prose(text: str) -> str:
    """Docstring text made safe for markdown: outside `code`, a '<' that would open an HTML tag is escaped."""
    pieces = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else re.sub(r"<(?=[A-Za-z/!])", "&lt;", p) for p in pieces)


def _markdown(doc: str) -> str:
    """A docstring as markdown: its doctest examples (from `>>>` to the next blank line) in python code blocks,
    without doctest directives; the prose as written."""
    out, block = [], []

    def flush():
        if block:
            indent = min(len(line) - len(line.lstrip()) for line in block if line.strip())
            out.extend(["```python", *(line[indent:] for line in block), "```"])
            block.clear()

    for line in doc.splitlines():
        if line.lstrip().startswith(">>>") or (block and line.strip()):
            block.append(re.sub(r"\s*# doctest:.*$", "", line))
            continue
        flush()
        out.append(_prose(line))
    flush()
    return "\n".join(out).strip()


def _value(name: str, obj) -> str:
    """A constant's line: its type, and its value where that is short and stable."""
    text = repr(obj)
    if name.startswith("__") or len(text) > 100 or " at 0x" in text:
        return f"{name}: {type(obj).__name__}"
    return f"{name}: {type(obj).__name__} = {text}"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return f"{getattr(f.default_factory, '__name__', 'factory')}()"
    return "required"


def _fields(cls) -> list[str]:
    """A dataclass's fields: name, type, default and (a config's) help text, one bullet each."""
    lines = []
    for f in dataclasses.fields(cls):
        help_text = " ".join((f.metadata.get("help") or "").split())
        lines.append(f"- `{f.name}: {_annotation(f.type)} = {_default(f)}`" + (f" — {help_text}" if help_text else ""))
    return lines


def _methods(cls, homes: dict[int, str]) -> list[str]:
    """The public methods and properties `cls` defines or inherits from cadiff's classes: those of a base written
    out on this page are a link to it, Config's are in the introduction."""
    lines, seen, skip, bases = [], set(), set(), []
    for base in cls.__mro__[1:]:
        if id(base) in homes and base not in skip:
            bases.append(base)
            skip.update(base.__mro__)
    for klass in cls.__mro__:
        if klass in skip or not klass.__module__.startswith("cadiff") or _qualified(klass) == CONFIG_BASE:
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(member, property):
                doc = _own_doc(member.fget)
                lines.append(f"- `{name}` (property)" + (f" — {_prose(' '.join(doc.split()))}" if doc else ""))
            elif isinstance(member, (staticmethod, classmethod)) or inspect.isfunction(member):
                lines.append(_method_line(name, member))
    for base in bases:
        home = homes[id(base)]
        lines.append(f"- the methods of [`{base.__name__}`](#{_anchor(f'{home}.{base.__name__}')})")
    return lines


def _method_line(name: str, member) -> str:
    """One method: its signature without self / cls, and its docstring on one line."""
    function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
    signature = _signature(function) or "(...)"
    if not isinstance(member, staticmethod):
        signature = re.sub(r"^\((self|cls)(, )?", "(", signature)
    doc = _own_doc(function)
    return f"- `{name}{signature}`" + (f" — {_prose(' '.join(doc.split()))}" if doc else "")


def _qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _class_header(cls) -> str:
    bases = ", ".join(b.__name__ for b in cls.__bases__ if b is not object)
    head = f"class {cls.__name__}" + (f"({bases})" if bases else "")
    if dataclasses.is_dataclass(cls):
        frozen = cls.__dataclass_params__.frozen
        return f"@dataclass{'(frozen=True)' if frozen else ''}\n{head}"
    signature = _signature(cls)
    return head + (f"\n{cls.__name__}{signature}" if signature else "")


def _entry(module: str, name: str, obj, homes: dict[int, str]) -> list[str]:
    """The full entry of one public name."""
    heading = f"`{module}.{name}`"
    parts = [f"### {heading}", ""]
    doc = _own_doc(obj)
    if inspect.isclass(obj):
        parts += ["```python", _class_header(obj), "```", ""]
    else:
        parts += ["```python", f"{name}{_signature(obj) or '(...)'}", "```", ""]
    parts += [_markdown(doc) if doc else "_No docstring._", ""]
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        parts += ["Fields:", "", *_fields(obj), ""]
    if inspect.isclass(obj):
        methods = _methods(obj, homes)
        if methods:
            parts += ["Methods:", "", *methods, ""]
    return parts


def render() -> str:
    """The text of docs/api.md, generated from the code as it is now."""
    import cadiff  # noqa: F401  (the package first: it registers the calibrated erase and the hardening)

    entries = _entries()
    homes = _homes(entries)
    config = importlib.import_module(CONFIG_BASE.rsplit(".", 1)[0]).Config
    parts = ["# API reference", "",
             "Generated from the docstrings by `docs/make_api_reference.py` (`--check` says whether this page is "
             "current; the tests run it). Per module: its purpose, then each public name (its `__all__`) with its "
             "signature, its fields (a config's fields are its settings, each with its default and the help of its "
             "CLI flag) and its docstring. An object is written out once, in the module it belongs to; the other "
             "modules that export it link to it. How to use them: [guide.md](guide.md); the commands: "
             "[cli.md](cli.md).", "",
             f"Every config (a method's, an attack's, a capture's or a training run's settings) is a frozen "
             f"dataclass derived from `{CONFIG_BASE}`; its fields are its settings, and it has these methods:", "", *_methods_of_config(config), "", "Modules:", ""]
    parts += [f"- [`{m}`](#{_anchor(m)}): {_summary(inspect.getdoc(importlib.import_module(m)))}" for m, _ in MODULES]
    parts.append("")
    for module_name, names in MODULES:
        module = importlib.import_module(module_name)
        parts += [f"## `{module_name}`", "", _prose(_module_paragraph(inspect.getdoc(module))) or "_No docstring._", ""]
        links, constants = [], []
        for name in public_names(module_name, names):
            obj = getattr(module, name)
            if not _documentable(obj):
                constants.append(f"- `{_value(name, obj)}`")
            elif homes[id(obj)] != module_name:
                home = homes[id(obj)]
                links.append(f"- [`{name}`](#{_anchor(f'{home}.{obj.__name__}')}) "
                             f"(`{home}`): {_summary(_own_doc(obj)) or '_No docstring._'}")
        if links:
            parts += ["Exported here, written out where they belong:" if len(links) < len(
                public_names(module_name, names)) else "Its public names, written out where they belong:", "",
                      *links, ""]
        if constants:
            parts += ["Constants:", "", *constants, ""]
        for name in public_names(module_name, names):
            obj = getattr(module, name)
            if _documentable(obj) and homes[id(obj)] == module_name:
                parts += _entry(module_name, name, obj, homes)
    return "\n".join(parts).rstrip() + "\n"


def _methods_of_config(config) -> list[str]:
    return [_method_line(name, member) for name, member in vars(config).items() if not name.startswith("_")
            and (inspect.isfunction(member) or isinstance(member, (staticmethod, classmethod)))]


def undocumented() -> list[str]:
    """Every public name (a class or a function) without a docstring of its own: 'module.name (file)'."""
    import cadiff  # noqa: F401

    root = Path(importlib.import_module("cadiff").__file__).parent.parent
    missing, seen = [], set()
    for module, name, obj in _entries():
        if not _documentable(obj) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if _own_doc(obj) is None:
            target = obj.__func__ if inspect.ismethod(obj) else obj
            try:
                where = Path(inspect.getsourcefile(target)).resolve().relative_to(root.resolve())
            except (TypeError, ValueError):
                where = getattr(target, "__module__", "?")
            missing.append(f"{module}.{name} ({where})")
    return missing


def problems() -> list[str]:
    """What is wrong with docs/api.md now: stale (with the start of the difference), or names without docstrings."""
    found = []
    current = API.read_text() if API.exists() else ""
    wanted = render()
    if current != wanted:
        diff = list(difflib.unified_diff(current.splitlines(), wanted.splitlines(), "docs/api.md (committed)",
                                         "docs/api.md (from the code now)", lineterm="", n=1))
        found.append("docs/api.md is not what the code generates now; run .venv/bin/python docs/make_api_reference.py"
                     "\n" + "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else ""))
    missing = undocumented()
    if missing:
        found.append("public names without a docstring:\n" + "\n".join(f"  {m}" for m in missing))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate docs/api.md from the docstrings.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if docs/api.md is stale or a "
                                                              "public name has no docstring")
    args = parser.parse_args()
    if args.check:
        found = problems()
        for problem in found:
            print(problem, file=sys.stderr)
        sys.exit(1 if found else 0)
    API.write_text(render())
    for name in undocumented():
        print(f"no docstring: {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
