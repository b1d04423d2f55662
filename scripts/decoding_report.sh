#!/usr/bin/env bash
# Greedy vs beam vs beam+LM for one checkpoint on AN4 test, with the LM weight tuned on dev.
# Usage: scripts/decoding_report.sh [CHECKPOINT [REPORT_DIR]]   (default: the newest demo's LSTM)
# Writes REPORT_DIR/tune_dev.json, bench_test.json and bench_test.md. Needs $ASR_DATA_DIR or ./data.
set -euo pipefail
ckpt=${1:-$(ls -td runs/an4_quick*/lstm/seed0/checkpoints/best.ckpt 2>/dev/null | head -1 || true)}
[ -n "$ckpt" ] || { echo "no checkpoint given and no demo run found: run \`make demo\` first" >&2; exit 2; }
out=${2:-reports/decoding}
asr=${ASR:-.venv/bin/asr}
mkdir -p "$out"
$asr lm build --dataset an4 --order 3 --out data/lm/an4
$asr tune-decoder "$ckpt" --lexicon data/lm/an4/lexicon.txt --lm data/lm/an4/an4_3gram.arpa \
  --lm-weights 0 0.5 1 2 3 4 --word-scores -1 0 1 2 3 4 5 6 --output "$out/tune_dev.json"
read -r weight score < <(python3 -c "import json; b=json.load(open('$out/tune_dev.json'))['best']; print(b['lm_weight'], b['word_score'])")
$asr bench transcribe "$ckpt" --lexicon data/lm/an4/lexicon.txt --lm data/lm/an4/an4_3gram.arpa \
  --lm-weight "$weight" --word-score "$score" --repeats 3 --output "$out/bench_test.json"
cat "$out/bench_test.md"
