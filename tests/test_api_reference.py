"""docs/api.md is generated from the docstrings (docs/make_api_reference.py): the committed page must be what the
code generates now, and every public name must have a docstring, so a stale or incomplete reference fails the
tests."""

import importlib.util
from pathlib import Path

import pytest

GENERATOR = Path(__file__).resolve().parents[1] / "docs" / "make_api_reference.py"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("make_api_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_api_reference_is_current(generator):
    assert generator.API.exists(), "docs/api.md is missing; run .venv/bin/python docs/make_api_reference.py"
    stale = [p for p in generator.problems() if p.startswith("docs/api.md")]
    assert not stale, stale[0]


def test_every_public_name_has_a_docstring(generator):
    missing = generator.undocumented()
    assert not missing, "public names without a docstring (add one, then regenerate docs/api.md):\n" + "\n".join(missing)


def test_the_reference_is_deterministic_and_covers_the_public_api(generator):
    text = generator.render()
    assert text == generator.render()
    assert " at 0x" not in text
    import cadiff

    for name in cadiff.__all__:  # every top-level name is written out (or, for a constant, listed) somewhere
        assert f"`{name}" in text, name
    for module, _ in generator.MODULES:
        assert f"## `{module}`" in text, module


def test_committed_cli_reference_is_current():
    # in a fresh interpreter: tests register their own methods and objectives, which would show in this one's parser
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(GENERATOR.with_name("make_cli_reference.py")), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
