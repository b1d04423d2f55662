"""Learning is tested by learning: a small LSTM must memorise 8 real AN4 utterances."""
import lightning as L
import torch

from asr.datamodule import ASRDataModule, FeatureDataset
from asr.metrics import error_rates
from asr.module import ASRModule


def test_small_lstm_overfits_eight_an4_utterances(data_dir, tmp_path):
    data = ASRDataModule(dataset="an4", data_dir=str(data_dir), batch_size=8, spec_augment=False,
                         cache_dir=str(tmp_path))
    # 8 training utterances of 1.2-2.2 s with at least three words
    eight = [e for e in data.load("train").examples if 120 <= e.log_mel.shape[0] <= 220 and len(e.text.split()) >= 3][:8]
    assert len(eight) == 8
    data.datasets["train"] = FeatureDataset(eight)
    torch.manual_seed(0)
    model = ASRModule(input_dim=data.feature_dim, cell="lstm", hidden_size=128, num_layers=1, dropout=0.0,
                      learning_rate=5e-3, weight_decay=0.0, warmup_fraction=0.1)
    L.Trainer(max_steps=500, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu").fit(model, data.dataloader("train", shuffle=True))
    model.eval()
    refs, hyps = [], []
    with torch.no_grad():
        for batch in data.dataloader("train"):
            refs += batch.texts
            hyps += model.transcribe_batch(batch)[1]
    rates = error_rates(refs, hyps)
    assert rates["cer"] < 10.0, list(zip(refs, hyps))
