#!/usr/bin/env bash
# Prepares, on a CPU machine, what the GPU run carries (64 MiB at most travels): AN4's transcripts and a
# float16 feature cache of train/dev/test for the study recipe's features instead of 93 MB of WAV
# (.gpu/), and wheels of the packages the device image lacks (.whl/). Then, with the device tool:
#   run(carry=[".gpu", ".whl"], command="bash scripts/gpu_study.sh", timeout_s=...)
# Usage: scripts/prepare_gpu_carry.sh [STUDY_RECIPE]   (needs $ASR_DATA_DIR or ./data holding an4/)
set -euo pipefail
recipe=${1:-recipes/studies/an4_gpu.yaml}
data=${ASR_DATA_DIR:-data}
py=${PYTHON:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/data/an4
cp -r "$data/an4/etc" .gpu/data/an4/
"$py" - "$recipe" "$data" <<'PY'
import sys, yaml
from asr.data.datamodule import ASRDataModule
data_config = yaml.safe_load(open(sys.argv[1]))["base"]["data"]
data_config.update(data_dir=sys.argv[2], cache_dir=".gpu/cache", cache_dtype="float16", max_utterances=None)
module = ASRDataModule(**data_config)
for split in ("train", "dev", "test"):
    print(split, len(module.load(split)), "utterances cached")
PY
if [ "${SKIP_WHEELS:-0}" != 1 ]; then
  mkdir -p .whl
  for pkg in soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 jiwer==4.0.0 rapidfuzz==3.14.6; do
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$pkg"
  done
fi
du -sh .gpu .whl 2>/dev/null || true
