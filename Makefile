# The two commands of the README. Both create .venv on first use; nothing beyond Python is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test,nudity,metrics,export]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cadiff demo --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/ruff check src tests bench docs
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs build
