#!/usr/bin/env bash
# The two CPU studies of the README's Results, one after the other, two jobs of one torch thread each
# (about 4 hours on 2 cores in all; run it in the background: nohup scripts/cpu_study.sh > runs/cpu_study.log 2>&1 &).
#   reports/an4_cpu/            tanh RNN (with/without clipping, widened), LSTM, GRU: recipes/studies/an4_cpu.yaml
#   reports/an4_remedies_cpu/   every remedy on a unidirectional tanh RNN: recipes/studies/an4_remedies_cpu.yaml
# Killed at any point? Run it again: finished runs are read back, an interrupted one resumes from last.ckpt.
set -euo pipefail
cd "$(dirname "$0")/.."
asr=${ASR:-.venv/bin/asr}
export OMP_NUM_THREADS=1
$asr compare -c recipes/studies/an4_cpu.yaml --jobs 2
$asr compare -c recipes/studies/an4_remedies_cpu.yaml --jobs 2
