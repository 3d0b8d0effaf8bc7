# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-all bench schema clean vscode vsix

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ray]'  # ray: the Ray back end's tests run, not skip
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/int8wb calibrate examples/digits/digits.calibration.toml --layers

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2  # CI has 2 cores; every test is independent of the others

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_default.py
	$(BIN)/python benchmarks/bench_check.py
	$(BIN)/python benchmarks/bench_daemon.py
	$(BIN)/python benchmarks/bench_dropfolder.py --models 100

bench-aa: $(STAMP)
	$(BIN)/python examples/ocr/prepare.py
	$(BIN)/python benchmarks/bench_accuracy_aware.py

vscode:
	cd editor_client/vscode && npm ci && npm run typecheck && npm run build

vsix: vscode
	cd editor_client/vscode && npx vsce package --no-dependencies --skip-license

# The published JSON Schemas (spec, result) and the extension's TypeScript types of the result.
schema: $(STAMP)
	$(BIN)/python -c "from int8wb.calibration import spec, result; spec.write_json_schema(); result.write_json_schema()"
	$(BIN)/python editor_client/vscode/scripts/schema_to_ts.py calibration/schema/result.schema.json \
		editor_client/vscode/src/result.ts Result

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache examples/*/calibrated
