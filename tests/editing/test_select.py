"""Selection rules against hand-computed examples: per-row truncation, sign guard, matrix, global, count."""

import pytest
import torch

from cadiff.attribution.selection import select_indices

# two rows of 5 inputs; flat index = row * 5 + column
S = {"w": torch.tensor([[5.0, -1.0, 3.0, 0.0, 4.0],
                        [-6.0, 2.0, -3.0, -0.5, 1.0]]),
     "v": torch.tensor([[0.1, 9.0], [-9.0, -0.2]])}


def idx(result, name):
    return result.get(name, torch.zeros(0, dtype=torch.int64)).tolist()


def test_row_rule_truncates_and_guards_the_sign():
    r = select_indices(S, ratio=0.5, scope="row")  # int(0.5 * 5) = 2 per row of w, int(0.5 * 2) = 1 per row of v
    assert idx(r, "w") == [0, 4, 6, 9]             # row 0: 5, 4 ; row 1: 2, 1
    assert idx(r, "v") == [1]                      # row 1 of v has no positive entry: nothing
    r = select_indices(S, ratio=0.39, scope="row")  # int(1.95) = 1 per row of w; int(0.78) = 0 for v
    assert idx(r, "w") == [0, 6] and "v" not in r
    r = select_indices(S, ratio=0.8, scope="row")   # 4 per row, but row 0 has only 3 positive entries
    assert idx(r, "w") == [0, 2, 4, 6, 9]


def test_negative_sign():
    r = select_indices(S, ratio=0.4, sign="negative", scope="row")  # 2 most negative per row of w
    assert idx(r, "w") == [1, 5, 7]                                   # row 0 has one negative entry
    assert "v" not in r                                               # int(0.4 * 2) = 0
    r = select_indices(S, ratio=0.5, sign="negative", scope="row")
    assert idx(r, "v") == [2]


def test_matrix_and_global_and_count():
    r = select_indices(S, ratio=0.3, scope="matrix")  # int(3.0) = 3 in w, int(1.2) = 1 in v
    assert idx(r, "w") == [0, 2, 4] and idx(r, "v") == [1]
    r = select_indices(S, count=3, scope="global")    # 9 (v), 5, 4 (w)
    assert idx(r, "w") == [0, 4] and idx(r, "v") == [1]
    r = select_indices(S, count=1, scope="row")
    assert idx(r, "w") == [0, 6] and idx(r, "v") == [1]


@pytest.mark.parametrize("kw", [dict(ratio=0.0), dict(ratio=1.5), dict(ratio=-0.1), dict(count=0), dict(),
                                dict(ratio=0.1, count=2)])
def test_bad_amounts(kw):
    with pytest.raises(ValueError):
        select_indices(S, **kw)


def test_bad_scope_and_sign():
    with pytest.raises(ValueError, match="scope"):
        select_indices(S, ratio=0.5, scope="layer")
    with pytest.raises(ValueError, match="sign"):
        select_indices(S, ratio=0.5, sign="both")
