"""The retention term: keep the base model's answers on general prompts while the facts are learnt.

Replay rows (augment kind `replay`: the base model's own answers to general prompts) are trained like any row,
with the SFT loss on the answer's tokens: that keeps the base's *greedy* answer. The retention term adds the
base model's whole next-token distribution on those tokens, a KL divergence from the base to the tuned model:

    loss = (sum of the SFT loss over answer tokens + retention_weight x sum of KL(base || tuned) over the
            replay answers' tokens) / answer tokens in the batch

so at retention_weight 1 a replay token's divergence weighs as much as one token of the SFT loss.

The teacher is the base model itself, asked once before each training call with the adapter switched off
(`disable_adapter()`): its top-k log-probabilities at every answer position of every replay row are kept in
memory (k = TOP_K; the tail beyond them holds under 1 % of the mass on the embedded model's own greedy answers).
No second copy of the weights (a free T4 has no room for one) and no second forward pass per step: the batches
that hold replay rows compute the logits once for both terms; the others take TRL's fused loss unchanged.
A packed row (padding-free) is split at its position resets, and each piece is found by its tokens, so packing,
length grouping and resumed calls need nothing from the dataset.

TRL's distillation trainers (GKD, and the experimental SDFT) need a teacher model beside the student and
generate on-policy; with lmbda 0 GKD is offline distillation on the dataset's rows, but it applies to every
row and takes a second model, so the term is written here, as a compute_loss on SFTTrainer (training.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

TOP_K = 32
BATCH = 16  # replay rows per forward pass while the teacher's answers are taken


def row_key(ids) -> bytes:
    """A row's identity: its tokens."""
    import numpy as np

    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).digest()


@dataclass
class Target:
    positions: object  # LongTensor [n]: positions whose next token is an answer token
    ids: object  # LongTensor [n, k]: the base model's top-k next tokens there
    logp: object  # FloatTensor [n, k]: their log-probabilities


class RetentionTerm:
    """KL(base || tuned) on the answer tokens of the replay rows, for SFTTrainer.compute_loss."""

    def __init__(self, weight: float, targets: dict[bytes, Target], rows: list[dict]):
        self.weight = weight
        self.targets = targets
        self.rows = rows

    @classmethod
    def build(cls, model, rows: list[dict], weight: float, progress=print,
              known: dict | None = None) -> "RetentionTerm | None":
        """The base model's top-k answers on `rows` (tokenised replay rows: input_ids, completion_mask), taken
        with the adapter off; None when there is nothing to keep (weight 0 or no replay rows). `known`: the
        answers taken before in this session (row key -> Target), which the base's answers do not outdate;
        rows found there are not asked again, and the new ones are added to it."""
        import contextlib
        import time

        import torch

        if not weight or not rows:
            return None
        known = {} if known is None else known
        missing = [r for r in rows if row_key(r["input_ids"]) not in known]
        if missing:
            started = time.perf_counter()
            base = getattr(model, "disable_adapter", contextlib.nullcontext)
            with torch.no_grad(), base():
                for row, logits in _logits_of(model, missing):
                    # the logits at position p predict token p + 1: the positions before each answer token
                    positions = torch.tensor([p - 1 for p, m in enumerate(row["completion_mask"]) if m and p > 0],
                                             device=logits.device)
                    top = torch.log_softmax(logits[positions].float(), dim=-1).topk(TOP_K, dim=-1)
                    known[row_key(row["input_ids"])] = Target(positions, top.indices, top.values) if len(positions) \
                        else None
            took = f"taken now ({time.perf_counter() - started:.1f} s)"
        else:
            took = "taken before in this session"
        targets = {k: known[k] for k in (row_key(r["input_ids"]) for r in rows) if known.get(k) is not None}
        progress(f"Retention term: the base model's answers on {len(targets)} replay rows, kept as its top {TOP_K} "
                 f"next tokens at each answer token, {took}; retention_weight {weight:g}.")
        return cls(weight, targets, rows)

    def divergence(self, model) -> float:
        """The mean KL(base || model) per replay answer token, now (no gradient): what the term keeps small."""
        import torch

        total, tokens = 0.0, 0
        with torch.no_grad():
            for row, logits in _logits_of(model, self.rows):
                target = self.targets.get(row_key(row["input_ids"]))
                if target is not None:
                    kl, n = self.kl_sum(logits[None], [(0, 0, target)])
                    total, tokens = total + float(kl), tokens + n
        return total / max(1, tokens)

    def pieces(self, inputs) -> list[tuple[int, int, Target]]:
        """(row of the batch, offset of the piece in it, target) for every replay row in a collated batch."""
        # the tokens (and the mask or positions) copied to the host once per batch, not a .tolist() per row: on
        # a GPU each copy of a device tensor waits for the queue, and a small model's step is bound by the host
        ids = inputs["input_ids"].cpu().numpy()
        out = []
        if "attention_mask" in inputs:  # right-padded rows, one item each
            lengths = inputs["attention_mask"].long().sum(dim=1).cpu().tolist()
            for b, n in enumerate(lengths):
                target = self.targets.get(row_key(ids[b, :n]))
                if target is not None:
                    out.append((b, 0, target))
            return out
        positions = inputs["position_ids"].cpu().numpy()  # padding-free: packed items, each from position 0
        for b in range(ids.shape[0]):
            starts = (positions[b] == 0).nonzero()[0].tolist() + [ids.shape[1]]
            for start, end in zip(starts, starts[1:]):
                target = self.targets.get(row_key(ids[b, start:end]))
                if target is not None:
                    out.append((b, start, target))
        return out

    def kl_sum(self, logits, pieces) -> tuple[object, int]:
        """(sum over the pieces' answer tokens of KL(base || tuned) over the base's top-k tokens, tokens)."""
        import torch

        total, tokens = logits.new_zeros((), dtype=torch.float32), 0
        for b, offset, t in pieces:
            student = torch.log_softmax(logits[b, offset + t.positions].float(), dim=-1).gather(-1, t.ids)
            total = total + (t.logp.exp() * (t.logp - student)).sum()
            tokens += len(t.positions)
        return total, tokens


def _logits_of(model, rows: list[dict]):
    """(row, its logits [length, vocab]) for tokenised rows, BATCH rows to a forward pass (right-padded), in
    the model's present mode."""
    import torch

    device = next(model.parameters()).device
    for i in range(0, len(rows), BATCH):
        chunk = rows[i:i + BATCH]
        width = max(len(r["input_ids"]) for r in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(chunk):
            ids[j, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[j, :len(r["input_ids"])] = 1
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        for j, r in enumerate(chunk):
            yield r, logits[j, :len(r["input_ids"])]


def sft_and_retention_loss(trainer, model, inputs, num_items_in_batch=None):
    """The SFT loss as TRL computes it (answer tokens' negative log-likelihood over the batch's answer tokens)
    plus the retention term, from one forward pass with the logits. Returns (loss, kl per replay token) or
    None when the batch holds no replay row (TRL's own fused loss then runs)."""
    import torch

    term = trainer.retention
    pieces = term.pieces(inputs)
    if not pieces:
        return None
    labels = inputs["labels"]
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
    logits = outputs.logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                            ignore_index=-100, reduction="sum")
    kl, tokens = term.kl_sum(logits, pieces)
    count = num_items_in_batch if num_items_in_batch is not None else (labels[:, 1:] != -100).sum()
    loss = (nll + term.weight * kl) / torch.as_tensor(count, device=logits.device).clamp(min=1)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * trainer.accelerator.num_processes  # as TRL's compute_loss: DDP averages the gradients
    return loss, float(kl.detach()) / max(1, tokens)
