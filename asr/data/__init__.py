"""Data: corpora on disk (and their download), audio, transcripts and vocabularies, features, augmentation,
the test conditions, and the batches a run trains on."""
