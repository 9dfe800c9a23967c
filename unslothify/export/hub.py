"""The Hugging Face Hub: push an export with its model card. The token comes from huggingface_hub (HF_TOKEN,
or `huggingface-cli login`) and is never printed, logged or saved by this package."""

from __future__ import annotations

from pathlib import Path

from ..errors import ExportError


def push_to_hub(folder: str | Path, repo_id: str, private: bool = True, progress=print) -> str:
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise ExportError("No Hugging Face token: set HF_TOKEN in the environment or run "
                          "`huggingface-cli login`, then push again.")
    from .card import minimal_card, read_info, write_card

    saved = read_info(folder)
    if saved is not None:  # the card again, its usage snippets naming the repo
        write_card(folder, saved[1], saved[0], model_ref=repo_id)
    elif not (Path(folder) / "README.md").exists():
        minimal_card(folder)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                                 ignore_patterns=["unslothify_*.json", "*.partial", ".*"])
    except Exception as e:  # the token may appear in some client errors: report the type and repo only
        raise ExportError(f"Push of {folder} to {repo_id} failed ({type(e).__name__}). Check the repo id, your "
                          f"network and the token's write permission.") from None
    progress(f"Pushed {folder} to https://huggingface.co/{repo_id}")
    return str(getattr(info, "commit_url", repo_id))
