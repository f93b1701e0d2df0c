"""Prompt sets: one row per image to generate, each with its own seed and an optional class for reporting.

Sources: a CSV in the shape of the public benchmark files (columns `prompt`, `evaluation_seed`, and one of
`class` / `artist` / `categories`, optionally `nudity_percentage`), a headerless file with one prompt per line,
or the built-in shapes world (`shapes`, `shapes:circle`, `shapes:circle,red`): every full prompt
'a {colour} {texture} {shape}' with its exact expected labels; `shapes-balanced` is a 36-prompt design where
each image scores one concept of every attribute (the quick protocol of the benchmarks).

Example:
    >>> from cadiff.evaluation import load_prompts
    >>> ps = load_prompts("shapes:circle")
    >>> len(ps), ps.rows[0].prompt, ps.rows[0].labels["shape"]
    (18, 'a red solid circle', 'circle')
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from cadiff.errors import BadInput, MissingFile

SHAPES_SET = "shapes"
BALANCED_SET = "shapes-balanced"
CLASS_COLUMNS = ("class", "artist", "categories")  # first one present names each row's class
SEED_COLUMN = "evaluation_seed"
KEPT_COLUMNS = ("nudity_percentage", "evaluation_guidance", "case_number")
# A first line of bare column names (identifiers, or blank for an index column) naming any of these is a CSV
# header; otherwise the file is one prompt per line.
HEADER_WORDS = {"prompt", SEED_COLUMN, *CLASS_COLUMNS, *KEPT_COLUMNS, "image_id"}
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 0 .. 2**63-1


@dataclass(frozen=True)
class PromptRow:
    """One image to make: its prompt, its seed, its class ('' if none), exact labels (shapes world) and extras."""

    index: int
    prompt: str
    seed: int
    cls: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSet:
    """An ordered list of prompt rows and where they came from.

    Example:
        >>> ps = PromptSet.from_prompts(["a red circle", "a blue star"], seeds=[0, 1])
        >>> [r.seed for r in ps.rows]
        [0, 1]
    """

    rows: tuple[PromptRow, ...]
    source: str

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def from_prompts(cls, prompts: list[str], seeds: list[int] | None = None, classes: list[str] | None = None,
                     source: str = "python") -> "PromptSet":
        """A prompt set from Python lists; seeds default to 0, 1, 2, ..."""
        seeds = list(range(len(prompts))) if seeds is None else seeds
        classes = [""] * len(prompts) if classes is None else classes
        if not (len(prompts) == len(seeds) == len(classes)):
            raise BadInput("prompts, seeds and classes must have the same length")
        if not prompts:
            raise BadInput("a prompt set needs at least one prompt")
        rows = tuple(PromptRow(i, p, int(s), c) for i, (p, s, c) in enumerate(zip(prompts, seeds, classes)))
        return cls(rows, source)

    def classes(self) -> list[str]:
        """The distinct classes in order of first appearance."""
        return list(dict.fromkeys(r.cls for r in self.rows))

    def digest(self) -> str:
        """A short sha256 of every row (prompt, seed, class, labels, extras): equal digests, equal images."""
        payload = [(r.index, r.prompt, r.seed, r.cls, sorted(r.labels.items()), sorted(r.extra.items()))
                   for r in self.rows]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def shapes_prompts(concepts: list[str] | None = None, per_prompt: int = 1, seed: int = 0) -> PromptSet:
    """Every full shapes-world prompt (6 shapes x 6 colours x 3 textures), `per_prompt` seeds each; restricted to
    prompts naming all of `concepts` if given. Row i gets seed `seed + i`; its class is its shape."""
    from cadiff.worlds.shapes.world import COLOURS, SHAPES, TEXTURES, attribute_of, full_caption

    wanted = {attribute_of(c): c for c in (concepts or [])}
    if len(wanted) < len(set(concepts or [])):
        raise BadInput(f"no shapes prompt names all of {', '.join(concepts or [])}; give at most one value per "
                       "attribute (shape, colour, texture)")
    rows = []
    for shape in SHAPES:
        for colour in COLOURS:
            for texture in TEXTURES:
                labels = {"shape": shape, "colour": colour, "texture": texture}
                if any(labels[a] != v for a, v in wanted.items()):
                    continue
                for _ in range(per_prompt):
                    i = len(rows)
                    rows.append(PromptRow(i, full_caption(shape, colour, texture), seed + i, shape, labels))
    name = SHAPES_SET + (":" + ",".join(concepts) if concepts else "")
    return PromptSet(tuple(rows), name if per_prompt == 1 else f"{name} x{per_prompt}")


def shapes_balanced(repeats: int = 1, seed: int = 0) -> PromptSet:
    """The shapes world's balanced design (36 rows a repeat: each shape and colour named 6 times, each texture 12
    times), the same one `cadiff erase` measures with; row k gets seed `seed + k`, its class is its shape."""
    from cadiff.worlds import get_world

    rows = tuple(PromptRow(k, prompt, seed + k, labels["shape"], labels)
                 for k, (prompt, labels) in enumerate(get_world("shapes").design(repeats)))
    return PromptSet(rows, BALANCED_SET if repeats == 1 else f"{BALANCED_SET} x{repeats}")


def read_text_file(path: str | Path, what: str = "prompt file") -> str:
    """The text of the file at `path`, read strictly as UTF-8 (a leading byte-order mark dropped), whatever the
    locale; a byte that is not UTF-8 is a one-line ValueError naming `what`, the file and the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInput(f"{what} {path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the "
                       "file as UTF-8") from None


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise MissingFile(f"prompt file {path} not found; give a CSV or text file, or 'shapes' for the "
                          "built-in shapes-world set")
    text = read_text_file(path)
    if not text.strip():
        raise BadInput(f"prompt file {path} is empty; it needs a 'prompt' column or one prompt per line")
    return text


def _looks_like_header(first_line: str) -> bool:
    try:
        cells = next(csv.reader([first_line]))
    except (csv.Error, StopIteration):
        return False
    names = [c.strip() for c in cells]
    return all(not n or n.isidentifier() for n in names) and bool(HEADER_WORDS & {n.lower() for n in names})


def _parse_seed(value: str, path: Path, line: int) -> int:
    """A whole number in 0..MAX_SEED, written as an integer or as a float with nothing after the point ('12.0')."""
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value() or not 0 <= number <= MAX_SEED:
        raise BadInput(f"{path}, line {line}: evaluation_seed '{value}' is not an integer in 0..2**63-1 (the seeds "
                       "torch.Generator takes); fix it, or drop the column to number rows 0, 1, 2, ...")
    return int(number)


def _from_csv(text: str, path: Path, seed: int) -> PromptSet:
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower(): c for c in (reader.fieldnames or []) if c is not None}
    if "prompt" not in columns:
        raise BadInput(f"{path} has no 'prompt' column (columns: {', '.join(columns) or 'none'}); name the prompt "
                       "column 'prompt', or give a headerless file with one prompt per line")
    class_col = next((columns[c] for c in CLASS_COLUMNS if c in columns), None)
    seed_col = columns.get(SEED_COLUMN)
    rows = []
    for record in reader:
        prompt = (record.get(columns["prompt"]) or "").strip()
        if not prompt:
            continue
        i = len(rows)
        row_seed = _parse_seed(record[seed_col] or "", path, reader.line_num) if seed_col else seed + i
        cls = (record.get(class_col) or "").strip() if class_col else ""
        extra = {c: (record.get(columns[c]) or "").strip() for c in KEPT_COLUMNS if c in columns}
        rows.append(PromptRow(i, prompt, row_seed, cls, {}, extra))
    if not rows:
        raise BadInput(f"{path} has a header but no prompts; add rows with a non-empty 'prompt'")
    return PromptSet(tuple(rows), str(path))


def _from_lines(text: str, path: Path, seed: int) -> PromptSet:
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    rows = tuple(PromptRow(i, p, seed + i) for i, p in enumerate(prompts))
    return PromptSet(rows, str(path))


def load_prompts(source: str | Path, per_prompt: int = 1, seed: int = 0) -> PromptSet:
    """Load a prompt set: a CSV with a `prompt` column, a headerless one-prompt-per-line file, `shapes[:c1,c2]` or
    `shapes-balanced`. Rows without an `evaluation_seed` get `seed + row index`; `per_prompt` repeats the shapes
    sets (seeds per prompt, or repeats of the balanced design)."""
    text_source = str(source)
    if text_source == BALANCED_SET:
        return shapes_balanced(per_prompt, seed=seed)
    if text_source == SHAPES_SET or text_source.startswith(SHAPES_SET + ":"):
        concepts = [c.strip() for c in text_source.partition(":")[2].split(",") if c.strip()]
        return shapes_prompts(concepts or None, per_prompt=per_prompt, seed=seed)
    path = Path(source).expanduser()
    text = _read_text(path)
    first = text.lstrip().splitlines()[0]
    return _from_csv(text, path, seed) if _looks_like_header(first) else _from_lines(text, path, seed)
