"""Errors: what the user can fix is a CadiffError, reported in one line with exit code 2; anything else is a bug and
keeps its traceback; a registry refuses a second part of the same name."""

import pytest

from cadiff.cli import main
from cadiff.errors import BadInput, CadiffError, MissingDependency, MissingFile, NotAFolder
from cadiff.io.files import OutputExistsError, OutputPathError
from cadiff.registry import Registry
from cadiff.models.loading import ModelLoadError


def test_every_error_of_the_users_is_a_cadiff_error_and_its_builtin():
    for cls, builtin in [(BadInput, ValueError), (MissingFile, FileNotFoundError), (NotAFolder, NotADirectoryError),
                         (MissingDependency, ImportError), (ModelLoadError, ValueError),
                         (OutputExistsError, FileExistsError), (OutputPathError, ValueError)]:
        assert issubclass(cls, CadiffError) and issubclass(cls, builtin), cls


def test_a_users_mistake_is_one_line(tmp_path, capsys):
    code = main(["generate", "a circle", "--steps", "2", "-n", "1", "--seed", "-3", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cadiff: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_an_internal_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """A KeyError (or a plain ValueError) inside cadiff is not the user's mistake: it is not turned into one line."""
    import cadiff.models.loading as loading

    def broken(*args, **kwargs):
        return {}["planted"]

    monkeypatch.setattr(loading, "describe_model", broken)
    monkeypatch.setattr("cadiff.models.describe_model", broken)
    with pytest.raises(KeyError, match="planted"):
        main(["generate", "a circle", "--steps", "2", "-n", "1", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()  # and nothing half-written


def test_a_registry_refuses_a_second_part_of_the_same_name():
    parts = Registry("part")

    @parts.register
    class One:
        name = "one"

    assert parts.register(One) is One  # the same class again (a module imported twice) is fine
    with pytest.raises(ValueError, match="a part named 'one' is registered already"):
        @parts.register
        class Other:
            name = "one"
    assert parts["one"] is One


@pytest.mark.parametrize("code, shown", [(0, None), (4, "exits 4"), (3, "exits 3")])
def test_the_demo_ends_well_once_its_certificate_is_written(tmp_path, monkeypatch, capsys, code, shown):
    """`make demo` shows the certificate whatever it proves; an error is still an error."""
    import cadiff.cli.cad as cad

    seen = []
    monkeypatch.setattr(cad, "run_edit", lambda args, objective: seen.append((args.concepts, args.out)) or code)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    assert seen == [(["circle"], str(tmp_path / "demo"))]
    out = capsys.readouterr().out
    assert (shown in out) if shown else "cadiff demo: done" not in out
    monkeypatch.setattr(cad, "run_edit", lambda args, objective: 2)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
