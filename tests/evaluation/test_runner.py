"""The resumable runner on a tiny random pipeline: results files, resume without regeneration, refusal to mix."""

import json

import numpy as np
import pytest

import importlib
from cadiff.evaluation import ResultsMismatchError, evaluate, load_prompts, read_rows

STEPS = 2
generation = importlib.import_module("cadiff.models.generate")


def run(pipe, out, evaluator, prompts="shapes:circle", **kw):
    kw.setdefault("steps", STEPS)
    kw.setdefault("batch_size", 5)
    return evaluate(pipe, load_prompts(prompts), out, metrics=["shapes"], metric_options={"judge_weights": evaluator}, **kw)


@pytest.fixture
def counted(monkeypatch):
    """Counts the prompts every generate() call receives."""
    calls = []
    real = generation.render

    def counting(pipe, prompts, seeds, **kw):
        calls.append(list(prompts))
        return real(pipe, prompts, seeds, **kw)

    monkeypatch.setattr(generation, "render", counting)
    return calls


def test_complete_run_writes_results(tiny_pipe, tiny_evaluator, tmp_path):
    summary = run(tiny_pipe, tmp_path / "r", tiny_evaluator)
    out = tmp_path / "r"
    rows = read_rows(out / "rows.csv")
    assert [r["index"] for r in rows] == list(range(18)) and len(list((out / "images").glob("*.png"))) == 18
    assert [r["seed"] for r in rows] == [r.seed for r in load_prompts("shapes:circle").rows]
    assert all(r["label_shape"] == "circle" for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(summary))
    shape_acc = np.mean([r["shapes_shape"] == "circle" for r in rows])
    assert metrics["metrics"]["shapes"]["accuracy"]["shape"] == pytest.approx(shape_acc, abs=1e-4)
    assert metrics["metrics"]["shapes"]["per_concept"]["circle"]["target"] == pytest.approx(shape_acc, abs=1e-4)
    assert metrics["metrics"]["shapes"]["settings"]["evaluator_sha256"]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["identity"]["sampling"]["steps"] == STEPS
    assert record["identity"]["model"]["fingerprint"] and record["versions"]["torch"]
    assert record["grids"] == ["grids/circle.png"] and (out / "grids" / "circle.png").is_file()


def test_interrupted_run_resumes_without_regenerating(tiny_pipe, tiny_evaluator, tmp_path, counted):
    reference = run(tiny_pipe, tmp_path / "full", tiny_evaluator)
    counted.clear()

    def stop_after_two_batches(n, seen=[]):
        seen.append(n)
        if len(seen) == 3:  # the start (0 rows resumed), then two batches
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_pipe, tmp_path / "r", tiny_evaluator, progress=stop_after_two_batches)
    assert len(read_rows(tmp_path / "r" / "rows.csv")) == 10 and not (tmp_path / "r" / "metrics.json").exists()
    counted.clear()
    resumed = run(tiny_pipe, tmp_path / "r", tiny_evaluator)
    generated = [p for call in counted for p in call]
    assert len(generated) == 8  # only the 8 unfinished rows
    assert resumed["metrics"] == reference["metrics"]
    assert read_rows(tmp_path / "r" / "rows.csv") == read_rows(tmp_path / "full" / "rows.csv")
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert [s["rows_reused"] for s in record["sessions"]] == [0, 10]
    counted.clear()
    run(tiny_pipe, tmp_path / "r", tiny_evaluator)  # already complete: nothing to generate
    assert counted == []


def test_cut_last_line_and_missing_image_are_regenerated(tiny_pipe, tiny_evaluator, tmp_path, counted):
    out = tmp_path / "r"
    run(tiny_pipe, out, tiny_evaluator)
    text = (out / "rows.csv").read_text()
    (out / "rows.csv").write_text(text[: len(text) - 10])  # an append cut by a crash
    (out / "images" / "00003.png").unlink()
    counted.clear()
    run(tiny_pipe, out, tiny_evaluator)
    assert sorted(p for call in counted for p in call) == sorted([load_prompts("shapes:circle").rows[i].prompt
                                                                  for i in (3, 17)])
    assert [r["index"] for r in sorted(read_rows(out / "rows.csv"), key=lambda r: r["index"])] == list(range(18))


def test_folder_of_another_run_is_refused_and_kept(tiny_pipe, tiny_evaluator, tmp_path):
    out = tmp_path / "r"
    run(tiny_pipe, out, tiny_evaluator)
    before = (out / "rows.csv").read_text()
    with pytest.raises(ResultsMismatchError, match="steps: 2 there, 3 now"):
        run(tiny_pipe, out, tiny_evaluator, steps=3)
    with pytest.raises(ResultsMismatchError, match="prompts"):
        run(tiny_pipe, out, tiny_evaluator, prompts="shapes:star")
    with pytest.raises(ResultsMismatchError, match="edit"):
        run(tiny_pipe, out, tiny_evaluator, edit={"kind": "cad-mask", "sha256": "abc"})
    assert (out / "rows.csv").read_text() == before
    run(tiny_pipe, out, tiny_evaluator, steps=3, overwrite=True)
    assert json.loads((out / "run.json").read_text())["identity"]["sampling"]["steps"] == 3


def test_other_model_is_refused(tiny_evaluator, tmp_path):
    from tiny_pipelines import tiny_sd

    run(tiny_sd("sd1", seed=0), tmp_path / "r", tiny_evaluator, prompts="shapes:circle,red")
    with pytest.raises(ResultsMismatchError, match="fingerprint"):
        run(tiny_sd("sd1", seed=1), tmp_path / "r", tiny_evaluator, prompts="shapes:circle,red")


def test_non_results_folder_is_refused(tiny_pipe, tiny_evaluator, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    with pytest.raises(ResultsMismatchError, match="not an evaluation results folder"):
        run(tiny_pipe, tmp_path / "r", tiny_evaluator)


def test_row_guidance_uses_each_rows_evaluation_guidance(tiny_pipe, tiny_evaluator, tmp_path, monkeypatch):
    path = tmp_path / "i2p.csv"
    path.write_text(",prompt,categories,evaluation_seed,evaluation_guidance\n0,a red circle,x,5,7\n"
                    "1,a blue star,x,6,3\n2,a red star,y,7,\n3,a blue circle,y,8,7\n")
    seen = []
    real = generation.render

    def recording(pipe, prompts, seeds, guidance=None, **kw):
        seen.extend((p, guidance) for p in prompts)
        return real(pipe, prompts, seeds, guidance=guidance, **kw)

    monkeypatch.setattr(generation, "render", recording)
    out = evaluate(tiny_pipe, load_prompts(path), tmp_path / "r", metrics=["shapes"],
                   metric_options={"judge_weights": tiny_evaluator}, steps=STEPS, guidance=5.0,
                   row_guidance=True)
    assert sorted(seen) == sorted([("a red circle", 7.0), ("a blue star", 3.0), ("a red star", 5.0),
                                   ("a blue circle", 7.0)])
    assert out["sampling"]["row_guidance"] is True
    single = real(tiny_pipe, ["a blue star"], [6], steps=STEPS, guidance=3.0)
    from PIL import Image

    assert (np.asarray(Image.open(tmp_path / "r" / "images" / "00001.png")) == single[0]).all()


def test_overwrite_replaces_the_old_results_only_when_the_new_run_completes(tiny_pipe, tiny_evaluator, tmp_path):
    out = tmp_path / "r"
    run(tiny_pipe, out, tiny_evaluator)
    old = {p.name: p.read_bytes() for p in (out / "rows.csv", out / "metrics.json")}

    def interrupt(n):
        if n:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_pipe, out, tiny_evaluator, overwrite=True, guidance=2.0, progress=interrupt)
    assert {p.name: p.read_bytes() for p in (out / "rows.csv", out / "metrics.json")} == old  # nothing lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # and nothing half-written beside it
    summary = run(tiny_pipe, out, tiny_evaluator, overwrite=True, guidance=2.0)
    assert summary["sampling"]["guidance"] == 2.0 and json.loads((out / "metrics.json").read_text()) == summary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_progress_counts_resumed_rows(tiny_pipe, tiny_evaluator, tmp_path):
    def stop_after_one_batch(n, seen=[]):
        seen.append(n)
        if n:  # the first call says the work starts (0 rows resumed)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_pipe, tmp_path / "r", tiny_evaluator, progress=stop_after_one_batch)
    told = []
    run(tiny_pipe, tmp_path / "r", tiny_evaluator, progress=told.append)
    assert told[0] == 5 and sum(told) == 18  # the bar ends at 100 %, not at 13 of 18


def test_words_the_model_does_not_know_and_rows_no_metric_can_read_are_refused_first(tiny_pipe, tiny_evaluator,
                                                                                    tmp_path, counted):
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("a red circle\na teal dotted hexagon\n")
    with pytest.raises(ValueError, match="unknown word 'teal' in prompt 'a teal dotted hexagon'"):
        run(tiny_pipe, tmp_path / "r1", tiny_evaluator, prompts=unknown)
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("an image of a shape\na shape\n")
    with pytest.raises(ValueError, match="no row of .*unlabelled.txt names one"):
        run(tiny_pipe, tmp_path / "r2", tiny_evaluator, prompts=unlabelled)
    assert counted == [] and not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    with pytest.raises(ValueError, match="unknown word 'tench'"):
        generation.generate(tiny_pipe, ["a tench"], [0], steps=STEPS)


def test_prompts_of_a_text_file_are_scored_by_the_words_they_name(tiny_pipe, tiny_evaluator, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("a red circle\na blue striped star\n")
    summary = run(tiny_pipe, tmp_path / "r", tiny_evaluator, prompts=plain)
    rows = read_rows(tmp_path / "r" / "rows.csv")
    assert [(r["label_shape"], r["label_colour"], r["label_texture"]) for r in rows] == [
        ("circle", "red", ""), ("star", "blue", "striped")]
    assert summary["metrics"]["shapes"]["accuracy"]["shape"] is not None
