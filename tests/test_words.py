"""Words as CTC's symbols (`data.units: words`, asr/data/text.py): the vocabulary, the greedy decoder's words, a study
that starts a word model from a character model's run, and learning (a small word model memorises real AN4
utterances, read back from their WAV files by `asr transcribe`)."""
import lightning as L
import pytest
import torch
import yaml

from asr.train.checkpoint import read_checkpoint
from asr.cli import main
from asr.decode.decoders import BeamSearchDecoder, GreedyDecoder
from asr.base.errors import UserError
from asr.decode.metrics import error_rates
from asr.data.text import BLANK, UNKNOWN, WordTokenizer, word_vocabulary
from helpers import tiny_study


def test_a_word_vocabulary_holds_each_training_word_once_and_labels_others_unknown():
    vocabulary = word_vocabulary(["enter two two", "ERASE, two"])
    assert vocabulary == [BLANK, UNKNOWN, "ENTER", "ERASE", "TWO"]
    assert WordTokenizer(vocabulary).encode("two rubout enter").tolist() == [4, 1, 2]


def test_greedy_decoding_of_word_symbols_gives_words_with_their_times():
    vocabulary = [BLANK, UNKNOWN, "ENTER", "TWO"]
    # a repeated word needs a blank between its two spikes, as a repeated letter does
    frames = [0, 2, 2, 0, 3, 0, 3, 3, 0]
    log_probs = torch.full((len(frames), len(vocabulary)), 0.02).index_put_(
        (torch.arange(len(frames)), torch.tensor(frames)), torch.tensor(0.94)).log()
    t = GreedyDecoder(vocabulary)(log_probs, frame_seconds=0.03)
    assert t.text == "ENTER TWO TWO"
    assert [(w.word, w.start, w.end) for w in t.words] == [("ENTER", 0.03, 0.06), ("TWO", 0.12, 0.15),
                                                           ("TWO", 0.18, 0.21)]


def test_beam_search_refuses_a_word_model_and_says_what_to_use():
    with pytest.raises(UserError, match="--decoder greedy"):
        BeamSearchDecoder([BLANK, UNKNOWN, "TWO"])


def test_a_word_study_starts_from_a_character_models_run_all_but_its_output_layer(data_dir, tmp_path):
    """A character study, then a word study whose init_from names its run (the path of
    recipes/streaming/an4_lstm_stream.yaml (stage 3)), through `asr compare`: the word model's symbols are the words of its
    training transcripts, the layers below the output are the character model's (a learning rate of 1e-10 keeps
    them), and `asr evaluate` of its checkpoint decodes only those words."""
    lstm = {"lstm": {"model": {"cell": "lstm"}}}
    chars = tiny_study("chars", data_dir, tmp_path / "cache", lstm, data={"max_utterances": 8},
                       trainer={"max_epochs": 1})
    (tmp_path / "chars.yaml").write_text(yaml.safe_dump(chars))
    assert main(["compare", "-c", str(tmp_path / "chars.yaml"), "--runs-dir", str(tmp_path / "runs1"),
                 "--report-dir", str(tmp_path / "report1")]) == 0
    source = tmp_path / "runs1/lstm/seed0/checkpoints/best.ckpt"
    words = tiny_study("words", data_dir, tmp_path / "cache", lstm, data={"max_utterances": 8, "units": "words"},
                       model={"learning_rate": 1e-10, "weight_decay": 0.0, "init_from": str(source)},
                       trainer={"max_epochs": 1})
    (tmp_path / "words.yaml").write_text(yaml.safe_dump(words))
    assert main(["compare", "-c", str(tmp_path / "words.yaml"), "--runs-dir", str(tmp_path / "runs2"),
                 "--report-dir", str(tmp_path / "report2")]) == 0

    from asr.data.corpora import load_split
    trained = read_checkpoint(tmp_path / "runs2/lstm/seed0/checkpoints/last.ckpt")
    vocabulary = trained["hyper_parameters"]["vocabulary"]
    assert vocabulary == word_vocabulary([u.text for u in load_split("an4", "train", data_dir)[:8]])
    before, after = read_checkpoint(source)["state_dict"], trained["state_dict"]
    assert after["model.output.weight"].shape[0] == len(vocabulary) != before["model.output.weight"].shape[0]
    body = [k for k in before if k.startswith("model.") and not k.startswith("model.output.")]
    assert body and all(torch.allclose(after[k], before[k], atol=1e-6) for k in body)

    out = tmp_path / "test.csv"
    assert main(["evaluate", str(tmp_path / "runs2/lstm/seed0/checkpoints/best.ckpt"), "--data-dir", str(data_dir),
                 "--output", str(out)]) == 0
    import csv
    hypotheses = [r["hypothesis"] for r in csv.DictReader(out.open())]
    assert len(hypotheses) == 130 and {w for h in hypotheses for w in h.split()} <= set(vocabulary[2:])


def test_a_small_word_lstm_memorises_eight_an4_utterances(data_dir, tmp_path, capsys):
    """The learning test of tests/test_learning.py with words as the symbols: the real Trainer, then
    `asr transcribe` of the WAV files."""
    from asr.data.corpora import load_split
    from asr.data.datamodule import ASRDataModule, FeatureDataset
    from asr.train.module import ASRModule

    data = ASRDataModule(dataset="an4", data_dir=str(data_dir), batch_size=8, spec_augment=False,
                         cache_dir=str(tmp_path / "cache"), normalize="global", units="words")
    eight = [e for e in data.load("train").examples if 120 <= e.log_mel.shape[0] <= 220 and len(e.text.split()) >= 3][:8]
    data.datasets["train"] = FeatureDataset(eight)
    L.seed_everything(0, verbose=False)
    model = ASRModule(input_dim=data.feature_dim, vocabulary=data.vocabulary, cell="lstm", hidden_size=128,
                      num_layers=1, dropout=0.0, bidirectional=False, learning_rate=5e-3, weight_decay=0.0,
                      warmup_fraction=0.1)
    trainer = L.Trainer(max_steps=1200, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0,
                        use_distributed_sampler=False)
    trainer.fit(model, datamodule=data)
    checkpoint = tmp_path / "words.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=True)
    by_id = {u.id: u for u in load_split("an4", "train", data_dir)}
    utterances = [by_id[e.id] for e in eight]
    assert main(["transcribe", str(checkpoint), *[str(u.path) for u in utterances]]) == 0
    hyps = capsys.readouterr().out.splitlines()
    refs = [u.text for u in utterances]
    assert len(hyps) == 8 and error_rates(refs, hyps)["wer"] < 10.0, list(zip(refs, hyps))


def test_a_model_and_data_of_other_symbols_are_refused_before_training(data_dir, tmp_path):
    """Word labels past a character model's 29 outputs would make the CTC loss read out of bounds."""
    from asr.data.datamodule import ASRDataModule
    from asr.train.module import ASRModule

    data = ASRDataModule(dataset="an4", data_dir=str(data_dir), max_utterances=8, cache_dir=str(tmp_path / "cache"),
                         units="words")
    model = ASRModule(input_dim=data.feature_dim, cell="lstm", hidden_size=16, num_layers=1)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    with pytest.raises(UserError, match="not the model's vocabulary"):
        trainer.fit(model, datamodule=data)
