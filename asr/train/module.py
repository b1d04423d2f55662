"""The LightningModule: CTC training of an AcousticModel, with the gradient instruments wired in.

Per training step it logs the loss, the learning rate and the gradient norm of every layer and of
the whole model *before* clipping (clipping itself is the Trainer's `gradient_clip_val`; null turns
it off, which is how the exploding case is shown). A step whose loss or gradient is not finite is
skipped and counted instead of poisoning the weights. Per epoch it logs the spectral radius of
each W_hh and, on dev, the CTC loss and greedy-decoding WER/CER that pick the best checkpoint.
"""
from __future__ import annotations

import math

from typing import Optional

import lightning as L
import torch
from torch import nn

from asr.decode.decoders import GreedyDecoder
from asr.train.checkpoint import acoustic_weights, read_training_checkpoint
from asr.base.errors import UserError
from asr.model.gradients import gradient_norms
from asr.model.remedies import gradient_norm_penalty
from asr.train.schedule import SCHEDULES, Plateau, warmup
from asr.decode.metrics import error_rates
from asr.model.acoustic import ModelConfig, build_model
from asr.data.text import VOCABULARY, tokenizer_for


class ASRModule(L.LightningModule):
    """Args:
        input_dim: feature dimension (linked from the data module by `asr train`).
        cell: rnn_tanh, rnn_relu, lstm or gru.
        hidden_size, num_layers, bidirectional, dropout: the recurrent stack.
        init: default (PyTorch's uniform), orthogonal, identity (IRNN) or gaussian initialisation of W_hh.
        spectral_radius: rescale each W_hh (block) to this spectral radius after init (None: leave it);
            for cell esn, the reservoirs' spectral radius (default 0.9).
        truncate_bptt: truncated backpropagation through time, at most this many frames (unidirectional only).
        gradient_penalty: weight of Pascanu et al.'s gradient-norm regulariser (unidirectional rnn_tanh/relu).
        esn_leak: leak rate of the echo-state reservoirs (cell esn).
        lookahead: frames of future context of the output layer (asr/model/acoustic.py `Lookahead`; unidirectional only).
        forget_bias: the LSTM forget gate's bias at init (None: PyTorch's default; 1.0 keeps the cell from the start).
        learning_rate, weight_decay: AdamW.
        warmup_fraction: share of the run's steps (at max_epochs) spent warming up to the peak learning rate.
        schedule: onecycle (anneal to max_epochs) or plateau (halve on plateaus of dev WER, stop when converged:
            asr/train/schedule.py); plateau_patience, plateau_min_delta, plateau_halvings, plateau_below: that rule's
            settings.
        vocabulary: output symbols, CTC blank first.
        weight_noise: standard deviation of the Gaussian noise added to every weight of the acoustic model for each
            training batch (Graves et al. 2013's regulariser for small data): the forward and backward pass see the
            noisy weights, the optimizer updates the clean ones. 0: none.
        init_from: a checkpoint (`asr train`'s or an exported one) whose acoustic-model weights training starts
            from instead of a random initialisation: a fine-tune (e.g. with SpecAugment, at a lower learning
            rate). It must be a model of the same shapes, on features of the same settings; with another vocabulary
            (characters there, words here) all but the output layer carry over. Read when a fit
            starts, not when a checkpoint is loaded; a resumed run (--ckpt_path) continues from its own weights.
    """

    def __init__(
        self,
        input_dim: int = ModelConfig.input_dim,
        cell: str = ModelConfig.cell,
        hidden_size: int = ModelConfig.hidden_size,
        num_layers: int = ModelConfig.num_layers,
        bidirectional: bool = ModelConfig.bidirectional,
        dropout: float = ModelConfig.dropout,
        init: str = ModelConfig.init,
        spectral_radius: Optional[float] = ModelConfig.spectral_radius,
        truncate_bptt: Optional[int] = ModelConfig.truncate_bptt,
        gradient_penalty: float = 0.0,
        esn_leak: float = ModelConfig.esn_leak,
        lookahead: int = ModelConfig.lookahead,
        forget_bias: Optional[float] = ModelConfig.forget_bias,
        learning_rate: float = 1.5e-3,
        weight_decay: float = 1e-2,
        warmup_fraction: float = 0.15,
        schedule: str = "onecycle",
        plateau_patience: int = Plateau.patience,
        plateau_min_delta: float = Plateau.min_delta,
        plateau_halvings: int = Plateau.halvings,
        plateau_below: float = Plateau.below,
        vocabulary: Optional[list[str]] = None,
        init_from: Optional[str] = None,
        weight_noise: float = 0.0,
    ):
        super().__init__()
        for name, value, ok, allowed in (
                ("hidden_size", hidden_size, hidden_size >= 1, "at least 1"),
                ("num_layers", num_layers, num_layers >= 1, "at least 1"),
                ("dropout", dropout, 0 <= dropout < 1, "in [0, 1)"),
                ("learning_rate", learning_rate, learning_rate > 0, "positive"),
                ("weight_decay", weight_decay, weight_decay >= 0, "0 or more"),
                ("warmup_fraction", warmup_fraction, 0 <= warmup_fraction < 1, "in [0, 1)"),
                ("gradient_penalty", gradient_penalty, gradient_penalty >= 0, "0 or more"),
                ("weight_noise", weight_noise, weight_noise >= 0, "0 or more"),
                ("schedule", schedule, schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
                ("plateau_patience", plateau_patience, plateau_patience >= 1, "at least 1"),
                ("plateau_min_delta", plateau_min_delta, plateau_min_delta >= 0, "0 or more"),
                ("plateau_halvings", plateau_halvings, plateau_halvings >= 0, "0 or more")):
            if not ok:
                raise UserError(f"model.{name} must be {allowed}, got {value}")
        vocabulary = list(vocabulary or VOCABULARY)
        self.save_hyperparameters()
        self.hparams["vocabulary"] = vocabulary  # the checkpoint carries the symbols it was trained on
        self.tokenizer = tokenizer_for(vocabulary)
        self.greedy = GreedyDecoder(vocabulary)
        self.model = build_model(self.hparams)  # the same call that rebuilds it from a checkpoint
        if gradient_penalty and not self.model.can_unroll():  # fail at construction, not at the first step
            raise UserError("gradient_penalty needs a unidirectional rnn_tanh or rnn_relu model without truncate_bptt")
        self.ctc_loss = nn.CTCLoss(blank=0, zero_infinity=False)
        self.nonfinite_steps = 0
        self.plateau = Plateau(plateau_patience, plateau_min_delta, plateau_halvings, plateau_below)  # used by schedule: plateau
        self._clean: Optional[list[torch.Tensor]] = None  # the weights without this batch's noise (weight_noise)
        self._refs: list[str] = []  # dev/test transcripts and hypotheses of the epoch under way
        self._hyps: list[str] = []

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.model(features, lengths)

    def ctc(self, log_probs: torch.Tensor, batch) -> torch.Tensor:
        # CTCLoss wants (frames, batch, classes); the mean divides each utterance's loss by its label length.
        return self.ctc_loss(log_probs.transpose(0, 1).float(), batch.labels, batch.feature_lengths,
                             batch.label_lengths)

    def evaluation_ctc(self, log_probs: torch.Tensor, batch) -> torch.Tensor:
        """CTC loss over the batch's utterances whose transcript CTC can emit (dev and test keep the others
        for the WER; their loss is infinite), averaged the way training averages it."""
        per_utterance = nn.functional.ctc_loss(log_probs.transpose(0, 1).float(), batch.labels, batch.feature_lengths,
                                               batch.label_lengths, blank=0, reduction="none")
        per_label = per_utterance / batch.label_lengths.to(per_utterance)
        return per_label[torch.isfinite(per_label)].mean()  # NaN when none can be emitted: logged as such

    def loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs = self.model(batch.features, batch.feature_lengths)
        return self.ctc(log_probs, batch), log_probs

    # --- training -------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if self.hparams.gradient_penalty:
            return self.penalized_training_step(batch)
        loss, _ = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.texts))
        return loss

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self.hparams.weight_noise:
            weights = self.trainable_weights()
            self._clean = [p.detach().clone() for p in weights]
            with torch.no_grad():
                for p, noise in zip(weights, self.weight_noise_draw(self.global_step)):
                    p.add_(noise)

    def on_after_backward(self) -> None:
        """The gradient is taken at the noisy weights; the clean ones come back before clipping and the step."""
        if self._clean is not None:
            with torch.no_grad():
                for p, clean in zip(self.trainable_weights(), self._clean):
                    p.copy_(clean)
            self._clean = None

    def trainable_weights(self) -> list[torch.Tensor]:
        """The acoustic model's weights that training moves (an echo state network's fixed W_hh is not one)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def weight_noise_draw(self, step: int) -> list[torch.Tensor]:
        """The noise of training step `step`, one tensor per trainable weight, on the weights' device (no copy from
        the CPU each step on a GPU): drawn from a generator of its own, seeded by the run's seed and the step, so that
        a resumed run adds the noise the uninterrupted one added (on the same kind of device)."""
        weights = self.trainable_weights()
        generator = torch.Generator(device=weights[0].device)
        generator.manual_seed((torch.initial_seed() * 1_000_003 + step) % 2**63)
        return [torch.randn(p.shape, generator=generator, device=p.device) * self.hparams.weight_noise for p in weights]

    def penalized_training_step(self, batch):
        """CTC loss + weight * Omega (asr/model/remedies.py): the frame-by-frame recurrence exposes every h_t,
        autograd gives dLoss/dh_t, and Omega asks each backward step to keep that gradient's norm."""
        log_probs, states = self.model.forward_unrolled(batch.features)
        loss = self.ctc(log_probs, batch)
        flat = [h for layer in states for h in layer]
        grads = torch.autograd.grad(loss, flat, retain_graph=True)
        frames = len(states[0])
        omega = sum(gradient_norm_penalty(getattr(self.model.rnn, f"weight_hh_l{i}"), layer,
                                          grads[i * frames:(i + 1) * frames], self.model.rnn.nonlinearity)
                    for i, layer in enumerate(states)) / len(states)
        self.log_dict({"train/loss": loss, "train/gradient_penalty": omega}, prog_bar=True, batch_size=len(batch.texts))
        return loss + self.hparams.gradient_penalty * omega

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Lightning calls this after backward, right before the optimizer step: measure, guard, then clip."""
        norms = gradient_norms(self.model)
        self.log_dict({f"grad_norm/{k}": v for k, v in norms.items()}, on_step=True, on_epoch=False)
        total = norms.get("total")
        if total is not None and bool(torch.isfinite(total)):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        else:  # NaN/inf loss or gradient: optimizers leave parameters without a gradient untouched
            self.nonfinite_steps += 1
            for p in self.parameters():
                p.grad = None
        self.log("train/nonfinite_steps", float(self.nonfinite_steps), on_step=True, on_epoch=False)

    # Subnormal floats (below 1.2e-38) take x86 CPUs a slow microcode path, many times slower per operation. A
    # recurrence makes them: gradients that vanish across time and saturated gates end up there as training goes
    # on (a 3 x 320 unidirectional LSTM, 30 epochs in, ran its steps 7x slower with them kept:
    # benchmarks/denormals.py). Training flushes them to zero; evaluation outside fit keeps IEEE behaviour.
    def on_fit_start(self) -> None:
        torch.set_flush_denormal(True)

    def on_train_start(self) -> None:
        if self.plateau.converged_epoch is not None:  # resumed after the rule ended the run: nothing left to train
            self.trainer.should_stop = True
        # after a resume has restored the scheduler: one-cycle's plan is the run's length when it started
        scheduler = self.lr_schedulers()
        planned = getattr(scheduler, "total_steps", None)  # OneCycleLR's
        if planned is not None and planned < self.trainer.estimated_stepping_batches:
            raise UserError(f"this run's one-cycle schedule was planned for {planned} steps, and this trainer would "
                            f"take {self.trainer.estimated_stepping_batches}: resume with the trainer.max_epochs the "
                            "run started with, or train on in a new run from its weights (--model.init_from "
                            "RUN/checkpoints/last.ckpt)")

    def setup(self, stage: str) -> None:
        # before the optimizer is built over the parameters; a resumed run's restore comes after and would win anyway
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and getattr(datamodule, "vocabulary", self.hparams.vocabulary) != self.hparams.vocabulary:
            # labels past the output layer's symbols would make the CTC loss read out of bounds
            raise UserError(f"the data's labels ({len(datamodule.vocabulary)} symbols, data.units) are not the "
                            f"model's vocabulary ({len(self.hparams.vocabulary)} symbols): build the model with "
                            "the data module's vocabulary")
        if stage == "fit" and self.hparams.init_from and self.trainer.ckpt_path is None:
            self.start_from(self.hparams.init_from)

    def start_from(self, path: str) -> None:
        """Copies the acoustic model's weights of checkpoint `path` into this one (model.init_from)."""
        ckpt = read_training_checkpoint(path)
        theirs = ckpt.get("datamodule_hyper_parameters", {})
        datamodule = self.trainer.datamodule
        if datamodule is not None:
            ours = datamodule.feature_config.as_dict()
            # the normalisation may change (a model moved to online normalisation, say): the same features, shifted
            differ = {k: (theirs[k], v) for k, v in ours.items() if k in theirs and theirs[k] != v and k != "normalize"}
            if differ:
                raise UserError(f"model.init_from {path} was trained on other features: "
                                + ", ".join(f"data.{k} {a!r} there, {b!r} here" for k, (a, b) in differ.items())
                                + ". Set these data values to the checkpoint's.")
        weights = acoustic_weights(ckpt)
        if ckpt["hyper_parameters"].get("vocabulary", VOCABULARY) != self.hparams.vocabulary:
            # other output symbols (characters there, words here): the network below the output layer carries over,
            # the output layer starts afresh
            weights = {k: v for k, v in weights.items() if not k.startswith("output.")}
            weights.update({k: v for k, v in self.model.state_dict().items() if k.startswith("output.")})
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as e:  # its first line names the model class, the next the first mismatch
            model = {k: ckpt["hyper_parameters"].get(k) for k in ("cell", "hidden_size", "num_layers", "bidirectional",
                                                                   "lookahead") if k in ckpt["hyper_parameters"]}
            lines = str(e).splitlines()
            mismatch = lines[1].strip() if len(lines) > 1 else str(e)
            raise UserError(f"model.init_from {path} holds another model ({model}): its weights do not fit this one "
                            f"({mismatch}). Give the model the checkpoint's shapes.") from None

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            torch.set_flush_denormal(False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nonfinite_steps"] = self.nonfinite_steps  # a resumed run keeps counting from here
        checkpoint["plateau"] = self.plateau.state_dict()  # ... and the convergence rule from where it stood

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.nonfinite_steps = int(checkpoint.get("nonfinite_steps", 0))
        if "plateau" in checkpoint:
            self.plateau.load_state_dict(checkpoint["plateau"])

    def on_train_epoch_end(self):
        radii = self.model.recurrent_spectral_radii()
        self.log_dict({f"spectral_radius/{k}": v for k, v in radii.items()})

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.learning_rate,
                                      weight_decay=self.hparams.weight_decay)
        steps = max(1, self.trainer.estimated_stepping_batches)
        if math.isinf(steps):  # trainer.max_epochs -1 and no max_steps: only the convergence rule ends the run
            if self.hparams.schedule != "plateau":
                raise UserError(f"model.schedule {self.hparams.schedule} anneals over the run's length, and this run "
                                "has none (trainer.max_epochs -1): set trainer.max_epochs or trainer.max_steps, or use "
                                "model.schedule plateau, whose convergence rule ends the run")
            if self.hparams.warmup_fraction:
                raise UserError(f"model.warmup_fraction {self.hparams.warmup_fraction} is a share of the run's steps, "
                                "and this run has no end (trainer.max_epochs -1): set trainer.max_epochs or "
                                "trainer.max_steps, or warmup_fraction 0")
        if self.hparams.schedule == "plateau":  # the peak rate, halved by the convergence rule (asr/train/schedule.py)
            warmup_steps = round(self.hparams.warmup_fraction * steps) if self.hparams.warmup_fraction else 0
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: warmup(step, warmup_steps) * self.plateau.factor)
        else:
            # One-cycle: warm up to the peak rate, then anneal. cycle_momentum=False: the schedule moves the
            # learning rate only, AdamW's beta1 stays 0.9 (OneCycleLR would otherwise cycle it 0.95 -> 0.85 -> 0.95).
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.hparams.learning_rate, total_steps=steps,
                pct_start=self.hparams.warmup_fraction, cycle_momentum=False)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- evaluation (dev, every epoch: picks the best checkpoint) ----------------------------------
    def validation_step(self, batch, batch_idx):
        log_probs = self.model(batch.features, batch.feature_lengths)
        scores = log_probs.detach().cpu()
        self._refs += batch.texts
        self._hyps += [self.greedy(row[:n], 0.0).text for row, n in zip(scores, batch.feature_lengths.tolist())]
        self.log("dev/loss", self.evaluation_ctc(log_probs, batch), batch_size=len(batch.texts))

    def on_validation_epoch_end(self):
        if self._refs:  # every rank decodes the whole split (see ASRDataModule.dataloader): no gathering
            rates = error_rates(self._refs, self._hyps)
            self.log_dict({"dev/wer": rates["wer"], "dev/cer": rates["cer"]}, prog_bar=True)
            if self.hparams.schedule == "plateau" and not self.trainer.sanity_checking:
                if self.plateau.update(self.current_epoch, rates["wer"]):
                    self.trainer.should_stop = True
                self.log("dev/lr_halvings", float(self.plateau.halved))
        self._refs, self._hyps = [], []
