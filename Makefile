# Two commands a user needs: `make demo` and `make test`. Both create the environment on first use.
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export ASR_DATA_DIR

.PHONY: venv lock onnx-venv test test-fast demo serve clean-venv

# The environment is requirements.lock, exactly (every package, transitive ones too, at one version), plus
# this project itself, editable, with no dependency resolution of its own.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip install --python $(PY) -r requirements.lock
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Re-resolve requirements.lock from pyproject.toml (the newest versions that fit, on every platform and
# Python >= 3.10), then `make venv` installs it. Run the tests before committing a new lock.
lock:
	test -x $(VENV)/bin/uv || (python3 -m venv $(VENV) && $(PY) -m pip install -q uv)
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra onnx --universal --python-version 3.10 -o requirements.lock
	$(VENV)/bin/uv pip compile requirements-onnx.in --universal --python-version 3.10 -o requirements-onnx.lock

# The deployment environment: `asr transcribe model.onnx` (an `asr export` to .onnx) through onnxruntime, no torch
# (requirements-onnx.lock, and this project without its dependencies). tests/test_onnx.py builds one too.
onnx-venv: $(STAMP)
	$(VENV)/bin/uv venv -q --allow-existing .venv-onnx
	$(VENV)/bin/uv pip install -q --python .venv-onnx/bin/python -r requirements-onnx.lock
	$(VENV)/bin/uv pip install -q --python .venv-onnx/bin/python --no-deps .

# The tests read AN4 and FSDD from $$ASR_DATA_DIR (CI: ../shared/data); without it they are downloaded
# into data/ once (checksummed) and read from there.
# A worker per core, one torch thread each (a file's tests on one worker, so that a module's fixtures are built
# once); the slowest 20 tests listed: the suite should stay under ~9 min.
test: $(STAMP)
	@if [ -z "$$ASR_DATA_DIR" ]; then $(VENV)/bin/asr download an4 fsdd --data-dir data; fi
	OMP_NUM_THREADS=1 $(PY) -m pytest -q --durations=20 -n auto --dist loadfile

# The tests that need no corpus (about a minute): models, recurrence, decoding, CLI errors, checkpoints.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not corpora"

# tanh RNN vs LSTM on AN4, CPU-sized (GPU when there is one). Uses $$ASR_DATA_DIR when set, else downloads AN4
# into data/ (checksummed) on first use. Each demo trains into a new runs/an4_quick-<time>/ folder, its report in
# runs/an4_quick-<time>/report/: earlier runs are kept, and so is the committed reports/an4_quick/.
demo: $(STAMP)
	@if [ -z "$$ASR_DATA_DIR" ]; then $(VENV)/bin/asr download an4 --data-dir data; fi
	run=runs/an4_quick-$$(date +%Y%m%d-%H%M%S); \
	$(VENV)/bin/asr compare -c recipes/studies/an4_quick.yaml --runs-dir $$run --report-dir $$run/report

# The comparison in a browser (http://127.0.0.1:7860): the shipped checkpoints, else the newest demo run's.
serve: $(STAMP)
	$(VENV)/bin/asr serve

clean-venv:
	rm -rf $(VENV)
