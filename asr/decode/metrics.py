"""Word and character error rates with jiwer, per corpus and per utterance."""
from __future__ import annotations

import jiwer


def error_rates(references: list[str], hypotheses: list[str]) -> dict:
    """WER and CER (in %) with word-level substitution / deletion / insertion counts."""
    words = jiwer.process_words(references, hypotheses)
    chars = jiwer.process_characters(references, hypotheses)
    return {
        "wer": 100 * words.wer,
        "cer": 100 * chars.cer,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
        "hits": words.hits,
        "reference_words": words.hits + words.substitutions + words.deletions,
        "utterances": len(references),
    }


def utterance_errors(reference: str, hypothesis: str) -> dict:
    words = jiwer.process_words(reference, hypothesis)
    return {"wer": 100 * words.wer, "substitutions": words.substitutions, "deletions": words.deletions,
            "insertions": words.insertions}


def score(utterances: list, hypotheses: dict[str, str]) -> tuple[dict, list[dict]]:
    """Scores hypotheses (by utterance id) against every reference of a split. A reference without a
    hypothesis counts as all deletions and is named in summary["no_hypothesis"]: nothing is left out."""
    refs = [u.text for u in utterances]
    hyps = [hypotheses.get(u.id, "") for u in utterances]
    summary = error_rates(refs, hyps)
    summary["no_hypothesis"] = [u.id for u in utterances if u.id not in hypotheses]
    rows = [{"id": u.id, "reference": r, "hypothesis": h, **utterance_errors(r, h)}
            for u, r, h in zip(utterances, refs, hyps)]
    return summary, sorted(rows, key=lambda row: row["id"])
