"""`asr lm build`, `asr tune-decoder` (dev only) and `asr bench transcribe` end to end."""
import json

from asr.cli import main


def test_lm_build_tune_on_dev_and_bench(checkpoint, data_dir, tmp_path, capsys):
    lm_dir = tmp_path / "lm"
    assert main(["lm", "build", "--dataset", "an4", "--data-dir", str(data_dir), "--order", "2", "--out", str(lm_dir)]) == 0
    arpa, lexicon = lm_dir / "an4_2gram.arpa", lm_dir / "lexicon.txt"
    words = {line.split()[0] for line in lexicon.read_text().splitlines()}
    assert {"ENTER", "RUBOUT", "SEVENTY"} <= words
    tuned = tmp_path / "tune.json"
    assert main(["tune-decoder", str(checkpoint), "--data-dir", str(data_dir), "--lexicon", str(lexicon), "--lm",
                 str(arpa), "--lm-weights", "0", "1", "--word-scores", "0", "--beam-size", "4",
                 "--output", str(tuned)]) == 0
    t = json.loads(tuned.read_text())
    assert t["split"] == "dev" and len(t["grid"]) == 2 and t["best"] in t["grid"]
    out = tmp_path / "bench.json"
    assert main(["bench", "transcribe", str(checkpoint), "--data-dir", str(data_dir), "--lexicon", str(lexicon),
                 "--lm", str(arpa), "--beam-size", "4", "--output", str(out)]) == 0
    b = json.loads(out.read_text())
    assert set(b["decoders"]) == {"greedy", "beam", "beam+lm"} and b["utterances"] == 130
    assert all(d["rtf"] > 0 and 0 <= d["cer"] for d in b["decoders"].values())
    printed = capsys.readouterr().out
    assert "best on dev" in printed and "RTF" in printed


def test_bench_train_times_the_loop_and_the_bare_model(data_dir, tmp_path):
    import yaml

    recipe = yaml.safe_load(open("recipes/an4_gru.yaml"))
    recipe["model"].update(hidden_size=8, num_layers=1)
    recipe["data"].update(max_utterances=16, batch_size=8, cache_dir=str(tmp_path / "cache"))
    recipe["trainer"]["accelerator"] = "cpu"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "train.json"
    assert main(["bench", "train", "-c", str(path), "--epochs", "2", "--data-dir", str(data_dir), "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["steps"] == 4 and r["full_loop_seconds"] > 0 and r["model_only_seconds"] > 0
    assert r["full_over_model_only"] == r["full_loop_seconds"] / r["model_only_seconds"]
