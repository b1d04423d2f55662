"""One path from checkpoint to model: every hyper-parameter a run was trained with comes back when its
checkpoint is loaded, by the one function (build_model) that training also uses."""
import inspect
from dataclasses import fields

import lightning as L
import pytest
import torch

from asr.data.datamodule import ASRDataModule
from asr.deploy.inference import Recognizer
from asr.model.acoustic import ModelConfig
from asr.train.module import ASRModule

FEATURES = dict(n_mels=40, win_ms=20.0, hop_ms=8.0, stack=2, stride=3)  # none of them the default


def test_the_training_module_offers_every_model_setting_with_the_config_default():
    """A recipe's `model:` section reaches the model through ASRModule's arguments (LightningCLI reads its
    signature): every ModelConfig field must be one of them, defaulting to the config's own default."""
    module = inspect.signature(ASRModule).parameters
    for field in fields(ModelConfig):
        if field.name == "vocab_size":  # from the vocabulary
            assert "vocabulary" in module
        else:
            assert module[field.name].default == field.default, field.name


@pytest.mark.parametrize("model_args", [
    dict(cell="rnn_relu", hidden_size=12, num_layers=2, bidirectional=False, dropout=0.1, init="orthogonal",
         spectral_radius=0.8, truncate_bptt=7),
    dict(cell="esn", hidden_size=24, num_layers=2, bidirectional=False, spectral_radius=0.5, esn_leak=0.7),
    dict(cell="gru", hidden_size=10, num_layers=3, bidirectional=True, dropout=0.3, init="gaussian"),
    dict(cell="rnn_tanh", hidden_size=8, num_layers=1, bidirectional=False, init="identity", gradient_penalty=0.5),
    dict(cell="lstm", hidden_size=12, num_layers=2, bidirectional=False, lookahead=3),
], ids=["relu-tbptt", "esn", "gru", "tanh-penalty", "lstm-lookahead"])
def test_a_loaded_checkpoint_gives_the_same_log_probabilities(model_args, data_dir, tmp_path):
    data = ASRDataModule(dataset="an4", data_dir=str(data_dir), batch_size=4, max_utterances=8, spec_augment=False,
                         cache_dir=str(tmp_path / "cache"), **FEATURES)
    L.seed_everything(0, verbose=False)
    module = ASRModule(input_dim=data.feature_dim, learning_rate=3e-3, **model_args)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(module, datamodule=data)
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path, weights_only=True)

    recognizer = Recognizer.from_checkpoint(path)  # what evaluate, transcribe, bench, tune-decoder and compare call
    assert recognizer.extractor.config == data.feature_config
    examples = data.load("dev").examples[:4]
    feats = [data.extractor.stack(e.log_mel) for e in examples]
    module.model.eval()
    with torch.no_grad():
        in_memory = [module.model(f[None])[0] for f in feats]
    loaded = recognizer.log_probs(feats, batch_size=1)
    for a, b in zip(in_memory, loaded):
        assert torch.equal(a, b)
    # and the settings themselves came back: the loaded model's config is the trained one's, field by field
    assert recognizer.model.config == module.model.config
    if module.model.lookahead is not None:  # trained: no longer the identity it starts as
        assert module.model.lookahead.conv.weight[:, 0, 1:].abs().sum() > 0
    for name, value in model_args.items():
        if name != "gradient_penalty":  # the training module's, not the model's
            assert getattr(recognizer.model.config, name) == value, name
