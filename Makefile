# Two commands a user needs: `make demo` and `make test`. Both create the environment on first use.
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export ASR_DATA_DIR

.PHONY: venv test demo serve clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip install --python $(PY) -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The tests read AN4 and FSDD from $$ASR_DATA_DIR (CI: ../shared/data); without it they are downloaded
# into data/ once (checksummed) and read from there.
test: $(STAMP)
	@if [ -z "$$ASR_DATA_DIR" ]; then $(VENV)/bin/asr download an4 fsdd --data-dir data; fi
	$(PY) -m pytest -q

# tanh RNN vs LSTM on AN4, CPU-sized (GPU when there is one); report in reports/an4_quick/.
# Uses $$ASR_DATA_DIR when set, else downloads AN4 into data/ (checksummed) on first use.
# Each demo trains into a new runs/an4_quick-<time>/ folder, so earlier runs are kept.
demo: $(STAMP)
	@if [ -z "$$ASR_DATA_DIR" ]; then $(VENV)/bin/asr download an4 --data-dir data; fi
	$(VENV)/bin/asr compare -c recipes/an4_quick.yaml --runs-dir runs/an4_quick-$$(date +%Y%m%d-%H%M%S)

# The comparison in a browser (http://127.0.0.1:7860): the shipped checkpoints, else the newest demo run's.
serve: $(STAMP)
	$(VENV)/bin/asr serve

clean-venv:
	rm -rf $(VENV)
