"""Memory flat in corpus size: training streamed from shards (data.storage: shards, asr/data/shards.py) on simulated
corpora of 1, 10 and 50 hours: for each, peak resident memory, time to the first batch and training throughput.

    .venv/bin/python benchmarks/shards_scale.py [--hours 1 10 50] [--steps 200] [--output benchmarks/shards_scale_cpu.json]

The corpora are made from AN4's training split (850 utterances, 0.64 h) in the feature domain, so that 50 hours
take minutes to make, not hours: utterance k is the log-mels of 1 to 3 AN4 training utterances drawn by a seeded
generator, concatenated (their transcripts joined), time-stretched by 0.9, 1.0 or 1.1 (linear interpolation along
time: the length change of speed perturbation, without its pitch shift), plus Gaussian noise (0.1 in log-mel
units), until the corpus holds N hours. What is measured is the data path, not recognition: no audio is stored
(no waveform augmentation). Shards are written once into --work (default data/cache/shards_scale) and reused.

Each corpus is measured in a fresh process, one torch thread (peak resident memory is per process): the sampler,
the examples and the batches exactly as `asr train` builds them (asr/data/datamodule.py, sharded_dataloader), feeding a
small model (1 x 128 unidirectional LSTM, CTC, AdamW) for --steps steps of 16 utterances, epoch after epoch.
Time to the first batch counts from building the loader to holding the first batch. Run it on a quiet machine.
"""
import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 16


def generate(hours: float, work: Path, data_dir: str) -> Path:
    """The shards of an N-hour corpus (written once)."""
    import numpy as np
    import torch

    from asr.data.dataset import CorpusFeatures
    from asr.data.features import FeatureConfig
    from asr.data.shards import write_records
    from asr.data.text import CharTokenizer

    target = work / f"{hours:g}h"
    if (target / "index.json").exists():
        return target
    corpus = CorpusFeatures("an4", data_dir, FeatureConfig(stride=3, normalize="global"), str(work / "features"))
    utts, feats = corpus.utterance_features("train")
    rng = np.random.default_rng(0)
    hop = corpus.feature_config.hop_ms / 1000

    def records():
        seconds, k = 0.0, 0
        while seconds < hours * 3600:
            picks = rng.integers(0, len(utts), rng.integers(1, 4))
            log_mel = torch.cat([feats[i] for i in picks])
            speed = float(rng.choice([0.9, 1.0, 1.1]))
            frames = max(1, round(len(log_mel) / speed))
            log_mel = torch.nn.functional.interpolate(log_mel.T[None], size=frames, mode="linear",
                                                      align_corners=True)[0].T
            log_mel = log_mel + 0.1 * torch.from_numpy(rng.standard_normal(log_mel.shape).astype(np.float32))
            seconds += frames * hop
            k += 1
            yield f"sim{k:07d}", " ".join(utts[i].text for i in picks), log_mel, None

    write_records(records(), corpus.extractor, CharTokenizer(), target, shard_size=1000)
    return target


def measure(folder: Path, steps: int) -> dict:
    """Runs in its own process: the data path of `asr train` feeding a small model."""
    import torch
    from torch.utils.data import DataLoader

    from asr.data.datamodule import Collate
    from asr.data.features import FeatureConfig, FeatureExtractor
    from asr.model.acoustic import AcousticModel, ModelConfig
    from asr.data.shards import ShardedBatches, ShardedExamples, read_index
    from asr.data.text import CharTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    index = read_index(folder)
    extractor = FeatureExtractor(FeatureConfig(**index["features"]), index["stats"])
    model = AcousticModel(ModelConfig(input_dim=extractor.config.output_dim, hidden_size=128, num_layers=1,
                                      bidirectional=False, dropout=0.0))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    ctc = torch.nn.CTCLoss(zero_infinity=True)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    sampler = ShardedBatches(folder, BATCH, seed=0)
    loader = DataLoader(ShardedExamples(extractor, CharTokenizer()), sampler=sampler, batch_size=None,
                        collate_fn=Collate(extractor))
    first_batch, done, utterances, epoch = None, 0, 0, 0
    while done < steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            if first_batch is None:
                first_batch = time.perf_counter() - start
                start = time.perf_counter()  # throughput from here on
            log_probs = model(batch.features, batch.feature_lengths)
            loss = ctc(log_probs.transpose(0, 1), batch.labels, batch.feature_lengths, batch.label_lengths)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done, utterances = done + 1, utterances + len(batch.ids)
            if done == steps:
                break
        epoch += 1
    seconds = time.perf_counter() - start
    return {"hours": index["seconds"] / 3600, "utterances": index["utterances"], "shards": len(index["shards"]),
            "disk_mb": sum(f.stat().st_size for f in folder.iterdir()) / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_data_mb": rss_before,
            "time_to_first_batch_s": first_batch, "steps": steps, "epochs_started": epoch + (done < steps),
            "utterances_per_s": utterances / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1, 10, 50])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--work", type=Path, default=REPO / "data/cache/shards_scale")
    parser.add_argument("--data-dir", default=None, help="folder holding an4/ (default: $ASR_DATA_DIR)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--generate-only", action="store_true", help="write the corpora's shards, measure nothing")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.steps)))
        return
    import os

    data_dir = args.data_dir or os.environ.get("ASR_DATA_DIR")
    rows = []
    for hours in args.hours:
        started = time.perf_counter()
        folder = generate(hours, args.work, data_dir)
        print(f"{hours:g} h: shards ready in {time.perf_counter() - started:.0f} s", flush=True)
    if args.generate_only:
        return
    for hours in args.hours:  # measured after all are written, so that no measurement shares the machine
        child = subprocess.run([sys.executable, __file__, "--measure", str(args.work / f"{hours:g}h"), "--steps",
                                str(args.steps)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if child.returncode:
            sys.exit(child.stderr[-3000:])
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, 1 torch thread", "command": " ".join(sys.argv),
              "rows": rows,
              "peak_rss_vs_first": [r["peak_rss_mb"] / base["peak_rss_mb"] for r in rows],
              "throughput_vs_first": [r["utterances_per_s"] / base["utterances_per_s"] for r in rows],
              "first_batch_vs_first": [r["time_to_first_batch_s"] / base["time_to_first_batch_s"] for r in rows]}
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, args.output.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    hours = [r["hours"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, label in zip(axes, ("peak_rss_mb", "time_to_first_batch_s", "utterances_per_s"),
                              ("peak resident memory (MB)", "time to first batch (s)", "training utterances / s")):
        ax.plot(hours, [r[key] for r in rows], "o-")
        ax.set_xscale("log")
        ax.set_xlabel("corpus hours")
        ax.set_title(label)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"Training streamed from shards ({result['machine']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
