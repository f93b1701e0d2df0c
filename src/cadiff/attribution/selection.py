"""Selection rules: which components to zero, from per-parameter scores.

- scope="row" (the paper's rule): in each output row, the top int(ratio * in_features) entries (or `count` per
  row), keeping only entries on the chosen side of zero (score > 0 for sign="positive", < 0 for "negative").
- scope="matrix": the top int(ratio * numel) entries (or `count`) inside each parameter tensor.
- scope="global": the top int(ratio * total) entries (or `count`) across all parameters.
- scope="head": whole attention heads, the top int(ratio * heads) (or `count`) by their summed score over the
  head's query/key/value rows and output-projection columns (`heads`: the layout {parameter: [module, axis, n]}).
Parameters with more than two dimensions are ranked as (shape[0], rest); 1-D ones as a single row.

Example:
    >>> idx = select_indices({"w": torch.tensor([[3., -1., 2., 0.5]])}, ratio=0.5)
    >>> idx["w"].tolist()
    [0, 2]
"""

from __future__ import annotations

import torch

from cadiff.errors import BadInput

SCOPES = ("row", "matrix", "global", "head")
SIGNS = ("positive", "negative")


def check_amount(ratio: float | None, count: int | None) -> None:
    """Exactly one of ratio in (0, 1] or a positive integer count; ValueError otherwise."""
    if (ratio is None) == (count is None):
        raise BadInput("give exactly one of ratio (a fraction in (0, 1]) or count (a number of weights)")
    if ratio is not None and not (0.0 < float(ratio) <= 1.0):
        raise BadInput(f"ratio must be in (0, 1], got {ratio}; e.g. 0.03 zeroes 3 % of each row")
    if count is not None and (int(count) != count or count < 1):
        raise BadInput(f"count must be a positive integer, got {count}")


def _oriented(score: torch.Tensor, sign: str) -> torch.Tensor:
    if sign not in SIGNS:
        raise BadInput(f"sign must be one of {', '.join(SIGNS)}, got '{sign}'")
    s = score.detach().float()
    return s if sign == "positive" else -s


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1) if t.ndim >= 2 else t.reshape(1, -1)


def _top(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the k largest entries of a 1-D tensor that are > 0."""
    k = min(k, flat.numel())
    if k <= 0:
        return torch.zeros(0, dtype=torch.int64)
    values, idx = flat.topk(k)
    return idx[values > 0]


def head_slices(shape: tuple[int, ...], axis: int, heads: int) -> list[torch.Tensor]:
    """Flat indices of each head's slice of a weight of `shape` split into `heads` along `axis`."""
    flat = torch.arange(int(torch.tensor(shape).prod())).reshape(shape)
    return [part.reshape(-1) for part in flat.chunk(heads, dim=axis)]


def head_scores(scores: dict[str, torch.Tensor], heads: dict[str, list], sign: str = "positive"
                ) -> dict[tuple[str, int], float]:
    """Summed (oriented) score of every attention head, over its slices of the weights in `scores`."""
    out: dict[tuple[str, int], float] = {}
    for name, (module, axis, n) in heads.items():
        if name not in scores:
            continue
        s = _oriented(scores[name], sign).reshape(-1)
        for h, idx in enumerate(head_slices(tuple(scores[name].shape), axis, n)):
            out[(module, h)] = out.get((module, h), 0.0) + float(s[idx].sum())
    return out


def _select_heads(scores: dict[str, torch.Tensor], heads: dict[str, list] | None, ratio: float | None,
                  count: int | None, sign: str) -> dict[str, torch.Tensor]:
    if not heads:
        raise BadInput("scope='head' needs the scores' head layout, which these scores do not record (their "
                       "selection holds no attention projection); use components that include attention")
    totals = head_scores(scores, heads, sign)
    k = int(count) if count is not None else int(float(ratio) * len(totals))
    chosen = {key for key, v in sorted(totals.items(), key=lambda kv: -kv[1])[:k] if v > 0}
    out = {}
    for name, (module, axis, n) in heads.items():
        if name in scores:
            parts = [idx for h, idx in enumerate(head_slices(tuple(scores[name].shape), axis, n)) if (module, h) in chosen]
            if parts:
                out[name] = torch.cat(parts).sort().values
    return out


def select_indices(scores: dict[str, torch.Tensor], ratio: float | None = None, count: int | None = None,
                   sign: str = "positive", scope: str = "row",
                   heads: dict[str, list] | None = None) -> dict[str, torch.Tensor]:
    """Sorted flat indices to zero per parameter under the rule (see module doc); parameters with none are left out."""
    check_amount(ratio, count)
    if scope not in SCOPES:
        raise BadInput(f"scope must be one of {', '.join(SCOPES)}, got '{scope}'")
    if scope == "head":
        return _select_heads(scores, heads, ratio, count, sign)
    out: dict[str, torch.Tensor] = {}
    if scope == "global":
        names = list(scores)
        flats = [_oriented(scores[n], sign).reshape(-1) for n in names]
        total = sum(f.numel() for f in flats)
        k = int(count) if count is not None else int(float(ratio) * total)
        chosen = _top(torch.cat(flats), k)
        start = 0
        for name, flat in zip(names, flats):
            inside = chosen[(chosen >= start) & (chosen < start + flat.numel())] - start
            if inside.numel():
                out[name] = inside.sort().values
            start += flat.numel()
        return out
    for name, score in scores.items():
        s = _oriented(score, sign)
        if scope == "matrix":
            k = int(count) if count is not None else int(float(ratio) * s.numel())
            idx = _top(s.reshape(-1), k)
        else:
            rows = _rows(s)
            cols = rows.shape[1]
            k = min(int(count) if count is not None else int(float(ratio) * cols), cols)
            if k <= 0:
                continue
            values, cidx = rows.topk(k, dim=1)
            flat = torch.arange(rows.shape[0], device=cidx.device).unsqueeze(1) * cols + cidx
            idx = flat[values > 0]
        if idx.numel():
            out[name] = idx.sort().values
    return out


def join_parts(indices: dict[str, torch.Tensor], parts: dict[str, list]) -> dict[str, torch.Tensor]:
    """Indices selected in slices of fused weights (`parts`: {'<parameter>#<label>': [parameter, axis, start, stop,
    shape]}, as `grouped_scores` records them) as flat indices of their parameters, merged per parameter."""
    out: dict[str, list[torch.Tensor]] = {}
    for key, idx in indices.items():
        if key not in parts:
            out.setdefault(key, []).append(idx)
            continue
        name, axis, start, stop, shape = parts[key]
        cols = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
        width = (stop - start) if axis == 1 else cols
        row, col = idx // width, idx % width
        row, col = (row + start, col) if axis == 0 else (row, col + start)
        out.setdefault(name, []).append(row * cols + col)
    return {name: torch.unique(torch.cat(parts_)) for name, parts_ in out.items()}
