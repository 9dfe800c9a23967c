"""Augmentation between prepare and train: teach facts, not phrasings.

Users bring one phrasing per fact and then ask in their own words. A model fine-tuned on one phrasing
stores the fact where only that phrasing reaches it (Allen-Zhu & Li, Physics of LMs 3.1; Ovadia et al.
2023), and one direction only (Berglund et al., the Reversal Curse). So the training split gets extra
records, written to a file beside the user's own (domain.jsonl -> domain.augmented.jsonl; the user's file
is never changed):

  rephrase   reworded questions, same answer: by rules (deterministic, no model), by the model in use
             ('model') or by a generator model the user names (hub id or folder)
  statement  the answer as a standalone statement naming its subject, plain text with loss on all of it
  reverse    where the answer is a name or entity (or the question asks what a term means), a question
             the other way round ("Who is Edda Lindqvist?")
  replay     the base model's own answers to general prompts (eval/general_prompts.jsonl), generated
             before training, so the tuned model keeps what it knew

Every record names its kind and its source line (the line of the user's file it came from; for replay,
the line of the prompts file, with "source" naming that file). Only the training split is augmented.
Generated variants are checked (not empty, not a copy of an existing question, names and numbers kept);
rejects are dropped and counted in the report (domain.augmented.report.json beside the file, and a copy
in the run folder's augment/report.json).

    result = augment(cfg, prepared)                 # writes the file: result.added (Items), result.report
    items = training_items(cfg, prepared)           # what training uses (regenerates a stale file)

Layout: stage.py runs the kinds and owns the file; kinds/ holds one module per kind (registered there);
english.py the English rewording rules; checks.py the checks every variant passes; context.py what a kind
works with.
"""

from .kinds import KINDS, NAMES, AugmentConfig  # noqa: F401
from .stage import (AugmentResult, augment, augmented_path, describe_items, load_augmented,  # noqa: F401
                    report_path, state, training_items)
