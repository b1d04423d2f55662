"""Training: the Lightning module (CTC loss), the learning-rate schedules, the one Trainer every run gets,
its callbacks, `asr train`, and reading, averaging and exporting checkpoints."""
