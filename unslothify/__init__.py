"""Fine-tune Mistral 7B (or the embedded SmolLM2-135M on CPU) on domain data with Unsloth.

Importing the package is light; Unsloth, transformers and TRL load when a stage needs them.
"""

__version__ = "0.1.0"

from .config import Config, load_config, save_config  # noqa: E402,F401
