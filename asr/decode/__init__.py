"""From log-probabilities to words: greedy and beam-search CTC decoding, the n-gram language model, cutting
long audio at pauses, and WER/CER."""
