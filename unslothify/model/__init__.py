"""The model: which one a config asks for (choice), loading it with its LoRA adapter (load), the embedded
SmolLM2, chat templates, batched greedy answers (generate) and the base model's answers kept per model
(base_answers)."""
