"""The retention term (unslothify/train/retention.py): the base model's distribution kept on the replay rows."""

import pytest
import torch

from conftest import INVENTED
from unslothify.train.retention import TOP_K, RetentionTerm, Target, row_key


def _target(n: int, vocab: int = 50, seed: int = 0) -> tuple[Target, torch.Tensor]:
    """A target taken from random logits at positions 0..n-1, and those logits."""
    logits = torch.randn(n, vocab, generator=torch.Generator().manual_seed(seed))
    top = torch.log_softmax(logits, dim=-1).topk(TOP_K, dim=-1)
    return Target(torch.arange(n), top.indices, top.values), logits


def test_replay_rows_are_found_in_padded_and_in_packed_batches():
    replay, other = [5, 6, 7, 8], [9, 10, 11]
    target, _ = _target(3)
    term = RetentionTerm(1.0, {row_key(replay): target}, [])
    padded = {"input_ids": torch.tensor([other + [0], replay]), "attention_mask": torch.tensor([[1, 1, 1, 0], [1] * 4])}
    assert [(b, offset) for b, offset, _ in term.pieces(padded)] == [(1, 0)]
    # padding-free: one row of items packed back to back, each starting again at position 0
    packed = {"input_ids": torch.tensor([other + replay + other]),
              "position_ids": torch.tensor([[0, 1, 2, 0, 1, 2, 3, 0, 1, 2]])}
    assert [(b, offset) for b, offset, _ in term.pieces(packed)] == [(0, 3)]
    assert term.pieces({"input_ids": torch.tensor([other]), "attention_mask": torch.ones(1, 3)}) == []


def test_the_divergence_is_zero_on_the_base_models_own_distribution_and_grows_away_from_it():
    target, logits = _target(4)
    term = RetentionTerm(1.0, {}, [])
    kl, tokens = term.kl_sum(logits[None], [(0, 0, target)])
    assert tokens == 4 and abs(float(kl)) < 1e-5
    shifted, _ = term.kl_sum((logits + torch.randn_like(logits))[None], [(0, 0, target)])
    assert float(shifted) > 0.1


@pytest.mark.slow
def test_the_retention_term_keeps_the_base_models_answers_on_replay_rows(tmp_path):
    """The same short run with and without the term: after it, the tuned model's distribution on the replay
    answers stays closer to the base model's with the term (the divergence it adds to the loss is what falls)."""
    from unslothify.config import load_config
    from unslothify.data.prepare import prepare
    from unslothify.train.session import FineTune

    data = tmp_path / "train.jsonl"
    data.write_text("".join((INVENTED / "train.jsonl").read_text().splitlines(keepends=True)[:24]))
    quiet = lambda *_: None  # noqa: E731
    divergence = {}
    for weight in (0.0, 20.0):
        cfg = load_config(None, model="embedded", data=str(data), output_dir=str(tmp_path / f"run-{weight:g}"),
                          objective="skill", validation_split=0.0, num_train_epochs=3, seed=3407,
                          retention_weight=weight, max_new_tokens=32,
                          augment={"rephrasings": 0, "statements": False, "reverse": False, "replay": 8})
        prepare(cfg, plot=False, progress=quiet)
        ft = FineTune.start(cfg, progress=quiet)
        data_rows = ft.training_data(cfg).replay_rows
        term = RetentionTerm.build(ft.model, data_rows, 1.0, quiet)
        assert term.divergence(ft.model) < 0.01, "a fresh adapter is the base model"
        version = ft.train(cfg)
        divergence[weight] = term.divergence(ft.model)
        logged = [h["retention_kl"] for h in version.history() if "retention_kl" in h]
        assert bool(logged) == bool(weight), "the term is logged when it is on, and only then"
        if weight:  # the session keeps the base's answers it took, and a later call (or the estimate) asks none again
            said = []
            again = RetentionTerm.build(ft.model, data_rows, weight, said.append, known=ft.retention_targets)
            assert "taken before in this session" in said[0] and again.targets.keys() == term.targets.keys()
            assert all(torch.equal(again.targets[k].ids, t.ids) for k, t in term.targets.items())
    assert divergence[20.0] < 0.5 * divergence[0.0], divergence
