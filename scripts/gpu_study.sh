#!/usr/bin/env bash
# The device run of the full study: `asr compare` on the carried float16 features (see
# prepare_gpu_carry.sh), everything it writes under $OUT (at most 8 files come back: the report's 7 and
# the log). GPU_STUDY_TINY=1 shrinks it to a few batches, to try the script on a CPU first:
#   ASR_DATA_DIR=../shared/data SKIP_WHEELS=1 scripts/prepare_gpu_carry.sh && GPU_STUDY_TINY=1 OUT=/tmp/o bash scripts/gpu_study.sh
set -euo pipefail
OUT=${OUT:-/tmp/gpu_study_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 ASR_DATA_DIR=$PWD/.gpu/data
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PWD:/tmp/site
fi
py=${PYTHON:-python3}
recipe=${GPU_STUDY_RECIPE:-recipes/studies/an4_gpu.yaml}
"$py" - "$recipe" "$OUT" <<'PY'
import os, sys, yaml
recipe = yaml.safe_load(open(sys.argv[1]))
recipe["base"]["data"].update(cache_dir=".gpu/cache", cache_dtype="float16")
recipe["report_dir"], recipe["runs_dir"] = sys.argv[2] + "/report", "/tmp/gpu_study_runs"
if os.environ.get("GPU_STUDY_TINY") == "1":
    recipe["seeds"] = recipe["seeds"][:1]
    recipe["models"] = dict(list(recipe["models"].items())[:2])
    recipe["baseline"] = next(iter(recipe["models"]))
    recipe["base"]["model"]["hidden_size"] = 16
    recipe["base"]["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=2)
yaml.safe_dump(recipe, open("/tmp/gpu_study_recipe.yaml", "w"), sort_keys=False)
PY
rm -rf /tmp/gpu_study_runs
(nvidia-smi --query-gpu=name,memory.total --format=csv || true) | tee "$OUT/compare.log"
"$py" -m asr.cli compare -c /tmp/gpu_study_recipe.yaml 2>&1 | tee -a "$OUT/compare.log"
