#!/usr/bin/env bash
# Re-makes every CPU report the README cites, from the code checked out now, in one go (about an hour on
# 2 CPU cores with one torch thread, or set OMP_NUM_THREADS=2 when nothing else runs):
#   reports/an4_quick (the demo study), reports/fsdd (FSDD LSTM test WER), reports/decoding (greedy vs
#   beam vs beam+LM on the demo's LSTM), reports/wrec_sweep, and docs/serve.png (the page on the shipped
#   models, in Debian's Chromium: `apt-get install chromium`). The two CPU studies (reports/an4_cpu,
#   reports/an4_remedies_cpu) take longer: scripts/cpu_study.sh, then scripts/ship_checkpoints.py.
# Runs go into new runs/<name>-<time>/ folders; nothing earlier is overwritten. Needs $ASR_DATA_DIR or ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
asr=${ASR:-.venv/bin/asr}
stamp=$(date +%Y%m%d-%H%M%S)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

$asr compare -c recipes/studies/an4_quick.yaml --runs-dir "runs/an4_quick-$stamp"

$asr train -c recipes/models/fsdd_lstm.yaml --run_dir "runs/fsdd_lstm-$stamp" --trainer.enable_progress_bar false
mkdir -p reports/fsdd
$asr evaluate "runs/fsdd_lstm-$stamp/checkpoints/best.ckpt" --dataset fsdd --split test \
  --output reports/fsdd/test_utterances.csv --summary-json reports/fsdd/test_greedy.json

scripts/decoding_report.sh "runs/an4_quick-$stamp/lstm/seed0/checkpoints/best.ckpt" reports/decoding

$asr wrec-sweep -c recipes/studies/wrec_sweep.yaml

data=${ASR_DATA_DIR:-data}
.venv/bin/python scripts/serve_screenshot.py docs/serve.png "$data/an4/wav/an4test_clstk/fcaw/an406-fcaw-b.wav" \
  "RUBOUT G M E F THREE NINE"
