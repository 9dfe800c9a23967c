"""Scoring: the eval contract and base-vs-tuned scores of a version (questions), and the knowledge and retention
probes scored while a model trains (probes)."""
