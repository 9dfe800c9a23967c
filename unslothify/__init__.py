"""Fine-tune Mistral 7B (or the embedded SmolLM2-135M on CPU) on domain data with Unsloth.

Importing the package imports nothing beyond the standard library: `unslothify.machine.runtime` must run on a
hosted runtime before anything of ours is installed, and Unsloth, transformers and TRL load when a stage
needs them. The config is `unslothify.config` (Config, load_config, save_config).
"""

__version__ = "0.1.0"
