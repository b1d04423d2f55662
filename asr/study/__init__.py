"""The study: a recipe of several models and seeds trained under one budget (`asr compare`), its results,
report and figures, and the W_rec sweep."""
