"""scripts/gpu_check.py, the checks to run once on a GPU, runs in its CPU mode and says what it found."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_every_check_on_the_cpu(data_dir, tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(REPO / "scripts/gpu_check.py"), "--device", "cpu", "--out", str(out),
                           "--data-dir", str(data_dir), "--utterances", "16", "--hidden", "32", "--files", "3"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert report["ok"] and set(checks) == {"cells", "resume", "evaluate", "stream", "onnx"}
    assert len(checks["cells"]["runs"]) == 6  # 3 cells x (float32, bf16-mixed)
    assert all(r["recurrent_input_dtypes"] == ["torch.float32"] for r in checks["cells"]["runs"].values())
    assert checks["resume"]["largest_weight_difference"] == 0.0  # exact on a CPU
    assert checks["stream"]["same_transcripts"] == checks["onnx"]["same_transcripts"] == 3
