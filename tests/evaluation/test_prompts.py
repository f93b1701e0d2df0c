"""Prompt sets: every supported file shape (written by the tests), the built-in shapes set, and clear errors."""

import pytest

from cadiff.evaluation import load_prompts
from cadiff.worlds.shapes.world import COLOURS, SHAPES, TEXTURES


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_class_csv_with_seeds(tmp_path):
    path = write(tmp_path, "objects.csv", "case_number,prompt,class,evaluation_seed\n"
                                          "0,an image of a tench,tench,1174\n1,an image of a church,church,6478\n")
    ps = load_prompts(path)
    assert [(r.prompt, r.seed, r.cls) for r in ps.rows] == [("an image of a tench", 1174, "tench"),
                                                             ("an image of a church", 6478, "church")]
    assert ps.rows[0].extra == {"case_number": "0"}


def test_artist_csv_with_unnamed_index_column(tmp_path):
    path = write(tmp_path, "artists.csv", ',case_number,prompt,evaluation_seed,artist\n'
                                          '0,0,"A portrait, in the style of Picasso",3721,Pablo Picasso\n')
    row = load_prompts(path).rows[0]
    assert (row.prompt, row.seed, row.cls) == ("A portrait, in the style of Picasso", 3721, "Pablo Picasso")


def test_unsafe_csv_keeps_nudity_and_categories(tmp_path):
    path = write(tmp_path, "unsafe.csv", ",prompt,categories,nudity_percentage,evaluation_seed,evaluation_guidance\n"
                                         '0,"a nude statue","sexual, violence",80.0,4261553411,7\n')
    row = load_prompts(path).rows[0]
    assert row.seed == 4261553411 and row.cls == "sexual, violence"
    assert row.extra["nudity_percentage"] == "80.0" and row.extra["evaluation_guidance"] == "7"


def test_csv_without_seeds_numbers_rows_from_seed(tmp_path):
    path = write(tmp_path, "captions.csv", "image_id,prompt\n1,A bicycle.\n2,A motorcycle.\n")
    assert [r.seed for r in load_prompts(path, seed=10).rows] == [10, 11]


def test_headerless_one_prompt_per_line(tmp_path):
    path = write(tmp_path, "lines.csv", "nude sculptures, classic :)\n\nsecond prompt ;-)\n")
    ps = load_prompts(path)
    assert [r.prompt for r in ps.rows] == ["nude sculptures, classic :)", "second prompt ;-)"]
    assert [r.seed for r in ps.rows] == [0, 1] and ps.rows[0].cls == ""


def test_shapes_builtin_set_has_every_full_prompt_with_exact_labels():
    ps = load_prompts("shapes")
    assert len(ps) == len(SHAPES) * len(COLOURS) * len(TEXTURES)
    assert len({r.prompt for r in ps.rows}) == len(ps) and len({r.seed for r in ps.rows}) == len(ps)
    for r in ps.rows:
        assert r.prompt == f"a {r.labels['colour']} {r.labels['texture']} {r.labels['shape']}"
        assert r.cls == r.labels["shape"]


def test_shapes_subset_and_repeats():
    circle = load_prompts("shapes:circle")
    assert len(circle) == len(COLOURS) * len(TEXTURES) and all(r.labels["shape"] == "circle" for r in circle.rows)
    red_circle = load_prompts("shapes:circle,red", per_prompt=4)
    assert len(red_circle) == 4 * len(TEXTURES) and len({r.seed for r in red_circle.rows}) == len(red_circle)


def test_balanced_set_names_every_concept_evenly():
    from collections import Counter

    ps = load_prompts("shapes-balanced", per_prompt=2)
    assert len(ps) == 72 and len({r.seed for r in ps.rows}) == 72
    counts = Counter(v for r in ps.rows for v in r.labels.values())
    assert {counts[s] for s in SHAPES} == {12} and {counts[c] for c in COLOURS} == {12}
    assert {counts[t] for t in TEXTURES} == {24}
    assert all(r.prompt == f"a {r.labels['colour']} {r.labels['texture']} {r.labels['shape']}" for r in ps.rows)


def test_digest_changes_with_seeds():
    assert load_prompts("shapes:star").digest() != load_prompts("shapes:star", seed=1).digest()


@pytest.mark.parametrize("text, message", [
    ("text,evaluation_seed\nhello,1\n", "no 'prompt' column"),
    ("prompt,evaluation_seed\nhello,one\n", "not an integer"),
    ("prompt,evaluation_seed\nhello,1.5\n", "not an integer"),
    ("", "is empty"),
    ("  \n\n", "is empty"),
    ("prompt,evaluation_seed\n", "no prompts"),
])
def test_bad_files_are_clear_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_prompts(write(tmp_path, "bad.csv", text))


def test_missing_file_and_unknown_shapes_concept(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_prompts(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="not a shapes-world concept"):
        load_prompts("shapes:teal")
    with pytest.raises(ValueError, match="no shapes prompt"):
        load_prompts("shapes:circle,star")
