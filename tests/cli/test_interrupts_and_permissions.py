"""Outputs get the permissions the user's umask gives; interrupts and unwritable places leave nothing behind and say
so in one line."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from cadiff.cli import main
from cadiff.io.files import atomic_dir, write_json
from tiny_pipelines import tiny_sd


def _modes(root):
    """{relative path: permission bits} of every file and folder under root (root included)."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = stat.S_IMODE(p.stat().st_mode)
    return out


@pytest.fixture
def umask():
    def set_to(value):
        os.umask(value)
    old = os.umask(0o022)
    yield set_to
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_run_folders_and_exports_follow_the_umask(tmp_path, umask, mask):
    from cadiff.editing import export_pipeline

    umask(mask)
    assert main(["generate", "a red circle", "-n", "2", "--steps", "2", "--out", str(tmp_path / "run")]) == 0
    export_pipeline(tiny_sd("sd1"), tmp_path / "export", info={"command": "test"})
    write_json(tmp_path / "alone.json", {"a": 1})
    for root in (tmp_path / "run", tmp_path / "export"):
        modes = _modes(root)
        assert {"grid.png", "run.json"} <= modes.keys() or "model_index.json" in modes
        for name, mode in modes.items():
            want = (0o777 if (root / name).is_dir() else 0o666) & ~mask
            assert mode == want, f"{root.name}/{name}: {oct(mode)}, want {oct(want)}"
    assert stat.S_IMODE((tmp_path / "alone.json").stat().st_mode) == 0o666 & ~mask


def test_exported_pipeline_is_readable_by_others_under_umask_022(tmp_path, umask):
    from cadiff.editing import export_pipeline

    umask(0o022)
    out = export_pipeline(tiny_sd("sd1"), tmp_path / "export")
    for p in [out, *out.rglob("*")]:
        assert p.stat().st_mode & stat.S_IROTH, p
        assert not p.is_dir() or p.stat().st_mode & stat.S_IXOTH, p


def test_unwritable_output_places_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for out, words in ((str(tmp_path / "afile" / "sub"), "is a file, not a folder"), ("/proc/cadiff-x", "not writable")):
        assert main(["generate", "a circle", "-n", "1", "--steps", "1", "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("cadiff: error:") and words in err and len(err.splitlines()) == 1
        assert "Errno" not in err


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["erase"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "required" in err and "usage:" not in err and "--help" in err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_command_leaves_nothing_behind(tmp_path, signum):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "cadiff", "generate", "a red circle", "-n", "400", "--batch-size",
                             "2", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert list(tmp_path.iterdir()) == []
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("cadiff: interrupted")


def test_atomic_dir_removes_its_folder_on_any_exception(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "x") as tmp:
            (tmp / "half.txt").write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_overwrite_moves_the_old_output_aside_until_the_new_one_is_in_place(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    (tmp_path / "out" / "run.json").write_text('{"command": "generate", "versions": {"cadiff": "0"}}')  # a cadiff run folder
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out", overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("the body failed")
    assert (tmp_path / "out" / "old.txt").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["out"]
    with atomic_dir(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(tmp_path / "out")) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["out"]
