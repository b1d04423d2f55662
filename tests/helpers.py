"""What several test files build alike: a tiny `asr train` command line and a tiny study recipe, on real AN4."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]


def train_argv(recipe: str, run_dir: Path, data_dir: Path, *extra: str, cache_dir: Optional[Path] = None,
               utterances: int = 24, batch_size: Optional[int] = 8, hidden_size: int = 16, num_layers: int = 1,
               epochs: int = 1) -> list[str]:
    """`asr train` arguments (without the program) for recipes/models/<recipe>.yaml shrunk to a few training utterances
    and a small model, on the CPU, without a progress bar; `extra` overrides anything before it."""
    argv = ["train", "-c", str(REPO / "recipes" / "models" / f"{recipe}.yaml"), "--run_dir", str(run_dir),
            "--data.data_dir", str(data_dir), "--data.max_utterances", str(utterances),
            "--data.cache_dir", str(cache_dir or Path(run_dir) / "cache"),
            "--model.hidden_size", str(hidden_size), "--model.num_layers", str(num_layers),
            "--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    if batch_size is not None:
        argv += ["--data.batch_size", str(batch_size)]
    return argv + list(extra)


TANH_RNN_CLIPPED = {"model": {"cell": "rnn_tanh"}, "trainer": {"gradient_clip_val": 1.0}}
LSTM = {"model": {"cell": "lstm"}}


def tiny_study(name: str, data_dir: Path, cache_dir: Path, models: dict, *, model: Optional[dict] = None,
               data: Optional[dict] = None, trainer: Optional[dict] = None, **recipe) -> dict:
    """An `asr compare` recipe for a test: 16 AN4 training utterances in batches of 8, a 1-layer bidirectional
    model of width 16, 2 epochs on the CPU, the gradient probe (30 frames of 2 dev utterances) every epoch;
    `model`, `data` and `trainer` change the base sections, anything else the recipe's top level."""
    return {
        "study": name, "seeds": [0], "baseline": next(iter(models)),
        "gradient_flow": {"frames": 30, "utterances": 2, "every_n_epochs": 1},
        "base": {"model": {"hidden_size": 16, "num_layers": 1, "bidirectional": True, **(model or {})},
                 "data": {"dataset": "an4", "data_dir": str(data_dir), "batch_size": 8, "max_utterances": 16,
                          "cache_dir": str(cache_dir), **(data or {})},
                 "trainer": {"max_epochs": 2, "accelerator": "cpu", "enable_progress_bar": False, **(trainer or {})}},
        "models": models, **recipe,
    }


def librispeech_layout(root: Path, subset: str, utterances: list, speakers: int = 2) -> None:
    """`utterances` (real AN4 speech) written into root/<subset> in LibriSpeech's published layout: FLAC files and a
    <speaker>-<chapter>.trans.txt per chapter, speakers 84, 85, ... taking turns."""
    import soundfile

    for n, u in enumerate(utterances):
        speaker, chapter = 84 + n % speakers, 121123
        folder = Path(root) / subset / str(speaker) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        uid = f"{speaker}-{chapter}-{n:04d}"
        audio, rate = soundfile.read(u.path)
        soundfile.write(folder / f"{uid}.flac", audio, rate)
        with open(folder / f"{speaker}-{chapter}.trans.txt", "a") as f:
            f.write(f"{uid} {u.text}\n")


def without_torch(folder: Path) -> dict:
    """Environment variables under which a Python process cannot import torch, torchaudio or Lightning (a
    sitecustomize.py in `folder` refuses them): the deployment without torch, in the test's own environment."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n\n\nclass NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchaudio', 'lightning'):\n"
        "            raise ImportError(f'{name} is not installed here')\n\n\n"
        "sys.meta_path.insert(0, NoTorch())\n")
    return {"PYTHONPATH": str(folder)}
