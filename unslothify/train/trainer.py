"""TRL's SFTTrainer with the probes scored at each evaluation and the retention term in its loss."""

from __future__ import annotations


def trainer_class():
    """SFTTrainer whose evaluations also score the knowledge and retention probes, and whose loss carries the
    retention term (unslothify/train/retention.py) on the batches that hold replay rows.

    `probe`: a callable (model, at_base) -> {'probe_recall', 'probe_retention', 'probe_seconds'}; at_base: the
    evaluation before the first step of a run, eval_on_start. The scores are added to the evaluation's metrics
    in `log`, before any callback runs: Trainer.evaluate() hands this same dict to log() and then to
    on_evaluate(), so the trackers, the loss history, the progress line, early stopping and Trainer's
    best-metric bookkeeping all see probe recall beside eval_loss. Trainer has no hook for generation-based
    metrics in a causal-LM evaluation (compute_metrics sees logits only).

    `retention`: a RetentionTerm, or None (TRL's loss alone)."""
    from trl import SFTTrainer

    class UnslothifySFTTrainer(SFTTrainer):
        probe = None
        retention = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.retention is not None and model.training and not return_outputs:
                from .retention import sft_and_retention_loss

                result = sft_and_retention_loss(self, model, inputs, num_items_in_batch)
                if result is not None:
                    loss, kl = result
                    self._metrics["train"]["retention_kl"].append(kl)
                    return loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def log(self, logs, *args, **kwargs):
            if self.probe is not None and "eval_loss" in logs:
                at_base = self.state.global_step == 0 and self.args.eval_on_start
                logs.update({f"eval_{k}": v for k, v in self.probe(self.model, at_base).items()})
            return super().log(logs, *args, **kwargs)

    return UnslothifySFTTrainer
