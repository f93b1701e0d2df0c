"""Output folders: --overwrite replaces only cadiff's own run folders, a folder being written is locked, the current
folder is never an output, seeds are checked before any work, and JSON files never hold NaN or Infinity."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import cadiff.io.files as cadiff_io
from cadiff.cli import main
from cadiff.evaluation import PromptSet, evaluate, load_prompts
from cadiff.io.files import OutputExistsError, atomic_dir, write_json
from cadiff.io.runs import versions

generation = importlib.import_module("cadiff.models.generate")
FOREIGN = "is not a cadiff run folder (no run.json written by cadiff)"


def _evaluate(pipe, out, evaluator, prompts, **kw):
    return evaluate(pipe, prompts, out, metrics=["shapes"], metric_options={"judge_weights": evaluator}, steps=2,
                    batch_size=5, **kw)


def _user_folder(path):
    path.mkdir()
    (path / "thesis.tex").write_text("my thesis")
    (path / "figures").mkdir()
    (path / "figures" / "plot.pdf").write_text("plot")
    return path


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


def _cadiff_run(path):
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"command": "generate", "versions": {"cadiff": "0"}}))
    return path


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("cadiff: error:") and len(err.splitlines()) == 1, err
    return err


# 1. --overwrite replaces only cadiff's own run folders


def test_overwrite_refuses_a_folder_cadiff_did_not_make(tmp_path, capsys):
    docs = _user_folder(tmp_path / "userdocs")
    before = _tree(docs)
    nowhere = str(tmp_path / "no-model")  # the refusal comes before the model is loaded
    for command in (["generate", "a circle", "-n", "1", "--steps", "1"],
                    ["evaluate", "--prompts", "shapes:circle,red", "--metrics", "shapes"]):
        assert main(command + ["--model", nowhere, "--out", str(docs), "--overwrite"]) == 2
        err = _one_line_error(capsys)
        assert FOREIGN in err and "--overwrite only replaces cadiff's own run folders" in err
        assert "choose another --out" in err
        assert _tree(docs) == before and sorted(os.listdir(tmp_path)) == ["userdocs"]


def test_refusals_never_suggest_overwrite_for_a_folder_cadiff_did_not_make(tmp_path, capsys):
    docs = _user_folder(tmp_path / "userdocs")
    nowhere = str(tmp_path / "no-model")
    for command in (["generate", "a circle", "-n", "1"], ["evaluate", "--prompts", "shapes:circle,red"]):
        assert main(command + ["--model", nowhere, "--out", str(docs)]) == 2
        err = _one_line_error(capsys)
        assert "already exists" in err or "not an evaluation results folder" in err
        assert "--overwrite" not in err and "no run.json written by cadiff" in err


def test_a_plain_file_at_out_is_refused_even_with_overwrite(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    for command in (["generate", "a circle", "-n", "1"], ["evaluate", "--prompts", "shapes:circle,red"]):
        assert main(command + ["--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "notes.txt"),
                               "--overwrite"]) == 2
        assert "is a file, not a cadiff run folder" in _one_line_error(capsys)
        assert (tmp_path / "notes.txt").read_text() == "mine"


def test_atomic_dir_replaces_a_cadiff_run_folder_but_not_another_folder(tmp_path):
    with pytest.raises(OutputExistsError, match="not a cadiff run folder"):
        with atomic_dir(_user_folder(tmp_path / "docs"), overwrite=True):
            pass
    not_ours = tmp_path / "almost"  # a run.json, but not one cadiff wrote
    not_ours.mkdir()
    (not_ours / "run.json").write_text(json.dumps({"command": "make", "versions": {"gcc": "13"}}))
    with pytest.raises(OutputExistsError, match="not a cadiff run folder"):
        with atomic_dir(not_ours, overwrite=True):
            pass
    run = _cadiff_run(tmp_path / "run")
    with atomic_dir(run, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(run)) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["almost", "docs", "run"] and (tmp_path / "docs" / "thesis.tex").is_file()


def test_generate_overwrite_replaces_its_own_run_folder(tmp_path):
    out = str(tmp_path / "run")
    assert main(["generate", "a red circle", "-n", "1", "--steps", "1", "--out", out]) == 0
    assert main(["generate", "a blue star", "-n", "1", "--steps", "1", "--out", out, "--overwrite"]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["prompts"] == ["a blue star"]
    assert sorted(os.listdir(tmp_path)) == ["run"]


# 2. a folder being written is locked

HOLDER = """import importlib.util, sys
spec = importlib.util.spec_from_file_location("io_", sys.argv[1])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
with io.output_lock(sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def held(tmp_path):
    """Hold the lock of an output path in another process (as a running cadiff command does); yields its pid."""
    procs = []

    def hold(path):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, cadiff_io.__file__, str(path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        if proc.returncode is None:
            proc.communicate("\n", timeout=30)


def test_a_folder_being_written_by_another_process_is_refused(tmp_path, held, capsys):
    holder = held(tmp_path / "run")
    assert main(["generate", "a circle", "-n", "1", "--steps", "1", "--model", str(tmp_path / "no-model"),
                 "--out", str(tmp_path / "run")]) == 2
    err = _one_line_error(capsys)
    assert f"is being written by another cadiff process (pid {holder.pid}); wait for it or choose another --out" in err
    with pytest.raises(cadiff_io.OutputBusyError, match=f"pid {holder.pid}"):
        with atomic_dir(tmp_path / "run"):
            pass
    holder.communicate("\n", timeout=30)
    assert os.listdir(tmp_path) == []  # the lock file goes with the run


def test_a_second_evaluate_into_the_same_folder_is_refused(tiny_pipe, tiny_evaluator, tmp_path, held, monkeypatch):
    prompts = PromptSet.from_prompts(["a red circle", "a blue star"], seeds=[0, 1])
    out = tmp_path / "r"
    _evaluate(tiny_pipe, out, tiny_evaluator, prompts)
    before = _tree(out)
    calls = []
    monkeypatch.setattr(generation, "render", lambda *a, **kw: calls.append(a))
    holder = held(out)
    for overwrite in (False, True):
        with pytest.raises(cadiff_io.OutputBusyError, match=f"pid {holder.pid}"):
            _evaluate(tiny_pipe, out, tiny_evaluator, prompts, overwrite=overwrite)
    held(tmp_path / "fresh")  # a new folder another process is starting
    with pytest.raises(cadiff_io.OutputBusyError):
        _evaluate(tiny_pipe, tmp_path / "fresh", tiny_evaluator, prompts)
    assert calls == [] and _tree(out) == before and not (tmp_path / "fresh").exists()


def test_a_stale_lock_file_of_a_killed_process_blocks_nothing(tmp_path):
    (tmp_path / ".run.lock").write_text("12345\n")  # left by a process killed with SIGKILL
    with atomic_dir(tmp_path / "run") as tmp:
        (tmp / "a.txt").write_text("a")
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_lock_file_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        with cadiff_io.output_lock(tmp_path / "run"):
            mode = (tmp_path / ".run.lock").stat().st_mode & 0o777
    finally:
        os.umask(old)
    assert mode == 0o640 and os.listdir(tmp_path) == []


def test_an_output_that_appears_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(OutputExistsError, match="already exists"):
        with atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
            _user_folder(out)  # another program made it while the run was working
    assert (out / "thesis.tex").read_text() == "my thesis" and sorted(os.listdir(tmp_path)) == ["run"]


# 3. the current folder, or one above it, is never an output


@pytest.mark.parametrize("out", [".", "..", "{cwd}", "{parent}", "sub/.."])
def test_the_current_folder_or_one_above_it_is_refused_up_front(tmp_path, monkeypatch, capsys, out):
    work = tmp_path / "work"
    work.mkdir()
    (work / "sub").mkdir()
    monkeypatch.chdir(work)
    out = out.format(cwd=work, parent=tmp_path)
    for overwrite in ([], ["--overwrite"]):
        assert main(["generate", "a circle", "-n", "1", "--model", str(tmp_path / "no-model"), "--out", out]
                    + overwrite) == 2
        assert "the current folder or one above it" in _one_line_error(capsys)
        assert sorted(os.listdir(tmp_path)) == ["work"] and sorted(os.listdir(work)) == ["sub"]


def test_a_failed_final_rename_puts_the_old_output_back_and_leaves_nothing_beside_it(tmp_path, monkeypatch):
    run = _cadiff_run(tmp_path / "run")
    real = os.replace

    def failing(src, dst):
        if str(src).endswith(".partial"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(cadiff_io.os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        with atomic_dir(run, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(tmp_path)) == ["run"] and sorted(os.listdir(run)) == ["run.json"]


# 4. seeds and the other inputs are checked before the results folder is made


def test_evaluate_refuses_out_of_range_seeds_before_any_work(tiny_pipe, tiny_evaluator, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(generation, "render", lambda *a, **kw: calls.append(a))
    for seed in (10**23, 2**63, -1):
        prompts = PromptSet.from_prompts(["a red circle", "a blue star"], seeds=[0, seed])
        with pytest.raises(ValueError, match=rf"row 1: seed {seed} is out of range; seeds are whole numbers from 0 "
                                             rf"to {2**63 - 1}"):
            _evaluate(tiny_pipe, tmp_path / "r", tiny_evaluator, prompts)
    assert calls == [] and os.listdir(tmp_path) == []


def test_a_seed_flag_out_of_range_is_refused_before_the_model_loads(tmp_path, capsys):
    nowhere = str(tmp_path / "no-model")
    assert main(["generate", "a circle", "-n", "2", "--seed", str(2**63 - 1), "--model", nowhere,
                 "--out", str(tmp_path / "r")]) == 2
    assert f"seed {2**63} is out of range" in _one_line_error(capsys)
    big = tmp_path / "big.csv"
    big.write_text("prompt,evaluation_seed\na red circle,1\na blue star,1e23\n")
    for source in ([str(big)], ["shapes:circle,red", "--seed", str(2**63)]):
        assert main(["evaluate", "--prompts", *source, "--model", nowhere, "--out", str(tmp_path / "r")]) == 2
        err = _one_line_error(capsys)  # said by the prompt-set reader or by the runner, before the model
        assert "seed" in err and ("out of range" in err or "0..2**63-1" in err) and "no-model" not in err
    assert sorted(os.listdir(tmp_path)) == ["big.csv"]


def test_a_bad_row_guidance_is_refused_before_the_folder_is_made(tiny_pipe, tiny_evaluator, tmp_path):
    i2p = tmp_path / "i2p.csv"
    i2p.write_text("prompt,evaluation_seed,evaluation_guidance\na red circle,0,7\na blue star,1,lots\n")
    with pytest.raises(ValueError, match="evaluation_guidance 'lots'"):
        _evaluate(tiny_pipe, tmp_path / "r", tiny_evaluator, load_prompts(i2p), row_guidance=True)
    prompts = PromptSet.from_prompts(["a red circle", "a blue star"], seeds=[0, 1])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(tiny_pipe, prompts, tmp_path / "r", metrics=["shapes"], metric_options={"judge_weights": tiny_evaluator},
                 steps=2, batch_size=0)
    assert os.listdir(tmp_path) == ["i2p.csv"]


def test_a_failure_before_the_first_image_leaves_no_folder_marked_running(tiny_pipe, tiny_evaluator, tmp_path,
                                                                          monkeypatch):
    def failing(*args, **kw):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(generation, "render", failing)
    prompts = PromptSet.from_prompts(["a red circle", "a blue star"], seeds=[0, 1])
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "r", tmp_path / "empty"):
        with pytest.raises(RuntimeError, match="out of memory"):
            _evaluate(tiny_pipe, out, tiny_evaluator, prompts)
    assert sorted(os.listdir(tmp_path)) == ["empty"] and os.listdir(tmp_path / "empty") == []


def test_a_failure_after_some_rows_keeps_them_and_says_the_run_stopped(tiny_pipe, tiny_evaluator, tmp_path,
                                                                       monkeypatch):
    real, calls = generation.render, []

    def second_batch_fails(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory")
        return real(*args, **kw)

    monkeypatch.setattr(generation, "render", second_batch_fails)
    prompts = PromptSet.from_prompts(["a red circle"] * 7, seeds=list(range(7)))
    with pytest.raises(RuntimeError):
        _evaluate(tiny_pipe, tmp_path / "r", tiny_evaluator, prompts)
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert record["status"] == "stopped" and len(os.listdir(tmp_path / "r" / "images")) == 5


# 5. JSON files never hold NaN or Infinity


@pytest.mark.parametrize("data, where, value", [
    ({"accuracy": math.nan}, "accuracy", "NaN"),
    ({"metrics": {"shapes": {"loss": [1.0, math.inf]}}}, "metrics.shapes.loss[1]", "Infinity"),
    ({"curve": np.array([0.5, -np.inf], dtype=np.float32)}, "curve[1]", "-Infinity"),
    ({"mean": np.float32("nan")}, "mean", "NaN"),
])
def test_write_json_refuses_non_finite_numbers_naming_the_key(tmp_path, data, where, value):
    with pytest.raises(ValueError, match=f"^metrics\\.json: {re.escape(where)} is {value}; "):
        write_json(tmp_path / "metrics.json", data)
    assert os.listdir(tmp_path) == []
    write_json(tmp_path / "metrics.json", {"ok": 1.5, "none": None})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"ok": 1.5, "none": None}
    (tmp_path / "metrics.json").unlink()


def test_run_json_of_a_run_folder_is_recognised(tmp_path):
    record = {"command": "generate", "versions": versions()}
    (tmp_path / "r").mkdir()
    write_json(tmp_path / "r" / "run.json", record)
    with atomic_dir(tmp_path / "r", overwrite=True) as tmp:
        (tmp / "x").write_text("x")
    assert os.listdir(tmp_path / "r") == ["x"]
