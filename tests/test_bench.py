"""`asr lm build`, `asr tune-decoder` (dev only), `asr bench transcribe` and `asr evaluate --decoder beam`
end to end; `asr bench train`."""
import csv
import json

import pytest

from asr.cli import main


@pytest.fixture(scope="module")
def lm(tmp_path_factory, data_dir):
    lm_dir = tmp_path_factory.mktemp("lm")
    assert main(["lm", "build", "--dataset", "an4", "--data-dir", str(data_dir), "--order", "2", "--out", str(lm_dir)]) == 0
    return lm_dir / "an4_2gram.arpa", lm_dir / "lexicon.txt"


def evaluate(checkpoint, data_dir, tmp_path, split, *decoder):
    summary, rows = tmp_path / f"{split}-summary.json", tmp_path / f"{split}-rows.csv"
    assert main(["evaluate", str(checkpoint), "--split", split, "--data-dir", str(data_dir), "--summary-json",
                 str(summary), "--output", str(rows), *decoder]) == 0
    return json.loads(summary.read_text()), list(csv.DictReader(open(rows)))


def test_lm_build_writes_the_training_vocabulary(lm):
    _, lexicon = lm
    words = {line.split()[0] for line in lexicon.read_text().splitlines()}
    assert {"ENTER", "RUBOUT", "SEVENTY"} <= words


def test_tune_decoder_scores_the_dev_split_and_picks_the_lowest(overfit, lm, data_dir, tmp_path, capsys):
    arpa, lexicon = lm
    tuned = tmp_path / "tune.json"
    assert main(["tune-decoder", str(overfit.checkpoint), "--data-dir", str(data_dir), "--lexicon", str(lexicon),
                 "--lm", str(arpa), "--lm-weights", "0", "2", "--word-scores", "0", "--beam-size", "4",
                 "--output", str(tuned)]) == 0
    grid = json.loads(tuned.read_text())["grid"]
    # each grid point is the WER `asr evaluate` gives on the dev split with those weights
    for point in grid:
        summary, _ = evaluate(overfit.checkpoint, data_dir, tmp_path, "dev", "--decoder", "beam", "--beam-size", "4",
                              "--lexicon", str(lexicon), "--lm", str(arpa), "--lm-weight", str(point["lm_weight"]),
                              "--word-score", str(point["word_score"]))
        assert point["dev_wer"] == summary["wer"]
    best = min(grid, key=lambda g: g["dev_wer"])
    assert f"best on dev: lm_weight {best['lm_weight']:g}, word_score {best['word_score']:g}" in capsys.readouterr().out


def test_evaluate_with_beam_search_and_a_lexicon_spells_only_known_words(overfit, lm, data_dir, tmp_path):
    arpa, lexicon = lm
    known = {line.split()[0] for line in lexicon.read_text().splitlines()}
    greedy, greedy_rows = evaluate(overfit.checkpoint, data_dir, tmp_path, "dev")
    beam, rows = evaluate(overfit.checkpoint, data_dir, tmp_path, "dev", "--decoder", "beam", "--beam-size", "8",
                          "--lexicon", str(lexicon))
    words = [w for r in rows for w in r["hypothesis"].split()]
    assert words and set(words) <= known
    assert not {w for r in greedy_rows for w in r["hypothesis"].split()} <= known  # greedy spells non-words here
    assert beam["utterances"] == greedy["utterances"] == len(rows)


def test_bench_transcribe_scores_exactly_as_evaluate(checkpoint, overfit, lm, data_dir, tmp_path):
    """One WER for one checkpoint and decoder, whichever command reports it (the study's is tested in
    test_compare), though bench reads the WAV files and evaluate the feature cache."""
    arpa, lexicon = lm
    out = tmp_path / "bench.json"
    assert main(["bench", "transcribe", str(overfit.checkpoint), "--data-dir", str(data_dir), "--lexicon", str(lexicon),
                 "--lm", str(arpa), "--beam-size", "4", "--repeats", "1", "--output", str(out)]) == 0
    b = json.loads(out.read_text())
    assert set(b["decoders"]) == {"greedy", "beam", "beam+lm"} and b["utterances"] == 130
    greedy, _ = evaluate(overfit.checkpoint, data_dir, tmp_path, "test")
    assert b["decoders"]["greedy"]["wer"] == greedy["wer"] and b["decoders"]["greedy"]["cer"] == greedy["cer"]
    beam_lm, _ = evaluate(overfit.checkpoint, data_dir, tmp_path, "test", "--decoder", "beam", "--beam-size", "4",
                          "--lexicon", str(lexicon), "--lm", str(arpa))
    assert b["decoders"]["beam+lm"]["wer"] == beam_lm["wer"]
    assert all(d["rtf"] > 0 and len(d["repeats"]) == 1 for d in b["decoders"].values())
    assert "median of the timed passes after an untimed warm-up" in out.with_suffix(".md").read_text()


def test_bench_train_times_the_loop_and_the_bare_model(data_dir, tmp_path):
    import yaml

    recipe = yaml.safe_load(open("recipes/models/an4_gru.yaml"))
    recipe["model"].update(hidden_size=8, num_layers=1)
    recipe["data"].update(max_utterances=16, batch_size=8, cache_dir=str(tmp_path / "cache"))
    recipe["trainer"]["accelerator"] = "cpu"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "train.json"
    assert main(["bench", "train", "-c", str(path), "--epochs", "2", "--data-dir", str(data_dir), "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["steps"] == {"full_loop": 4, "model_only": 4}  # 16 utterances in batches of 8, 2 epochs, in each loop
    assert r["full_loop_seconds"] > 0 and r["model_only_seconds"] > 0 and r["device"].startswith("cpu")
