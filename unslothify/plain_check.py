"""Load an exported model with plain transformers (no unsloth, no peft) and write its logits for prompts.

Run as a separate process so nothing Unsloth or PEFT patched in the exporting process can help:
    python -m unslothify.plain_check MODEL_DIR PROMPTS.json OUT.pt [--gguf FILE]
PROMPTS.json is a list of token-id lists. OUT.pt gets {"logits": [tensor per prompt], "greedy": [ids]}.
"""

import json
import sys


def main(argv):
    model_dir, prompts_path, out_path = argv[:3]
    gguf = argv[argv.index("--gguf") + 1] if "--gguf" in argv else None
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf} if gguf else {}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs)
    model.eval()
    assert not any(m in sys.modules for m in ("unsloth", "peft")), "plain check must not load unsloth or peft"
    prompts = json.load(open(prompts_path))
    logits, greedy = [], []
    gen = model.generation_config
    pad = gen.pad_token_id if gen.pad_token_id is not None else gen.eos_token_id
    if isinstance(pad, (list, tuple)):  # eos may be a list of ids (Unsloth writes one); generate wants one id
        pad = pad[0] if pad else None
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids])
            logits.append(model(input_ids=x).logits[0].float())
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=24, do_sample=False,
                                 pad_token_id=pad)
            greedy.append(out[0, len(ids):].tolist())
    torch.save({"logits": logits, "greedy": greedy, "dtype": str(next(model.parameters()).dtype)}, out_path)


if __name__ == "__main__":
    main(sys.argv[1:])
