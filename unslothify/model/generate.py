"""Greedy answers in batches (eval, probes, replay) and the generation mode they run in."""

from __future__ import annotations

import contextlib
import logging

from ..data.tokens import with_system


class _LengthChosen(logging.Filter):
    """Every generate call here passes max_new_tokens (the knob); the models Unsloth loads carry a max_length in
    their generation config, so transformers would warn at every call, 21 times a run, about a choice made on
    purpose. Only that message is dropped."""

    def filter(self, record):
        return not record.getMessage().startswith("Both `max_new_tokens`")


logging.getLogger("transformers.generation.utils").addFilter(_LengthChosen())


def generation_batch() -> int:
    """Questions answered per generate call: on a GPU a decoding step costs about the same for 64 rows as for
    16, on a CPU it costs per row (and padding wastes more of it)."""
    from ..machine.device import has_cuda

    return 64 if has_cuda() else 16


@contextlib.contextmanager
def inference_mode(model):
    """Eval mode and the KV cache for generation; restored afterwards."""
    was_training = model.training
    cache = getattr(model.config, "use_cache", True)
    model.eval()
    model.config.use_cache = True
    try:
        import torch

        with torch.inference_mode():
            yield
    finally:
        model.config.use_cache = cache
        if was_training:
            model.train()


def device_of(model):
    return next(model.parameters()).device


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                              return_dict=True)["input_ids"])


def stop_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.eos_token_id is not None:
        ids |= set(gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id])
    return sorted(i for i in ids if i is not None)


def answer_batch(model, tokenizer, questions: list[str], max_new_tokens: int = 64, system_prompt: str = "",
                 batch_size: int | None = None, progress=None, desc: str | None = None) -> list[str]:
    """Greedy single-turn answers, in batches with left padding (default: generation_batch()). With `desc`, a
    progress bar (questions answered, of all, with an estimate) under that label."""
    batch_size = batch_size or generation_batch()
    answers: list[str] = []
    bar = None
    if desc:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(questions), desc=desc, unit="answer", leave=False)
    with inference_mode(model):
        for start in range(0, len(questions), batch_size):
            chunk = questions[start:start + batch_size]
            prompts = [prompt_ids(tokenizer, with_system([{"role": "user", "content": q}], system_prompt))
                       for q in chunk]
            batch = tokenizer.pad({"input_ids": prompts}, padding_side="left", return_tensors="pt").to(device_of(model))
            width = batch["input_ids"].shape[1]
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids(tokenizer, model))
            for row in out[:, width:]:
                answers.append(tokenizer.decode(row, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip())
            if progress:
                progress(len(answers), len(questions))
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return answers
