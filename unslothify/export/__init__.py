"""Exports of a version, each checked after writing: the adapter, a merged 16-bit model and GGUF (stage, gguf),
the check against the adapter on its base (verify, plain_check), Ollama's Modelfile, model cards, the Hub."""
