"""Writes notebooks/*.ipynb (without outputs) from the cell lists below.

The notebooks are the user interface; this file is their reviewable source. Edit here, then run
    python -m scripts.build_notebooks
tests/test_notebooks.py checks that the committed notebooks match this file and carry no outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

from unslothify.export.stage import FORMATS  # noqa: E402
from unslothify.machine.runtime import REPO_URL  # noqa: E402

PARAMS_NOTE = ("Parameters (papermill tags this cell `parameters`): `overrides` sets any config knob for this run, "
               "e.g. `{\"num_train_epochs\": 5}`.")

SETUP_NOTE = ("**Set up this runtime.** On Colab, brev or vast with nothing of ours on it, this clones the project "
              "(from `repo_url`, or the `UNSLOTHIFY_REPO` environment variable) and installs its pinned libraries, "
              "keeping the runtime's own torch and CUDA libraries. Where everything is installed already (a second "
              "run, or after `make install`) it checks and does nothing.")

# The first cell that runs code: it must work before anything of ours is installed, so it finds or clones
# the project and then calls unslothify.machine.runtime, which needs only the standard library.
SETUP_CELL = """import os, subprocess, sys

found = [d for d in (project_dir, ".", "mistral-unslothify") if os.path.isdir(os.path.join(d, "unslothify"))]
if not found:  # this notebook was opened on its own (Colab): fetch the project beside it
    url = os.environ.get("UNSLOTHIFY_REPO", repo_url)
    subprocess.run(["git", "clone", "--depth", "1", url, "mistral-unslothify"], check=True)
    found = ["mistral-unslothify"]
project_dir = os.path.abspath(found[0])
sys.path.insert(0, project_dir)
from unslothify.machine.runtime import setup

runtime = setup(project_dir)"""


def md(text):
    return new_markdown_cell(text.strip())


def code(text, parameters=False):
    cell = new_code_cell(text.strip())
    if parameters:
        cell.metadata["tags"] = ["parameters"]
    return cell


def header(icon, title, intro):
    return md(f'<img src="../icons/{icon}" width="48" align="left" style="margin-right:12px"/>\n\n'
              f"# {title}\n\n{intro}")


def setup_cells(extra_params="", overrides="{}"):
    return [
        md(PARAMS_NOTE),
        code('project_dir = ".."          # the project folder; cloned to ./mistral-unslothify when not found\n'
             f'repo_url = "{REPO_URL}"\n'
             f'config_path = "config.yaml"\noverrides = {overrides}\n{extra_params}', parameters=True),
        md(SETUP_NOTE),
        code(SETUP_CELL),
        md("Work from the project folder and load the one config (defaults < config.yaml < `overrides`)."),
        code("from unslothify.ui.notebook import start\n\ncfg = start(project_dir, config_path, overrides)"),
    ]


NOTEBOOKS = {
    "00_gpu_check.ipynb": [
        header("gpu.svg", "0 · GPU check",
               "What this runtime has, and the settings that suit it. On Colab pick a GPU runtime first "
               "(Runtime → Change runtime type). Without a GPU everything still runs, on the CPU, with the small "
               "embedded model."),
        *setup_cells(),
        md("Versions of the driver, compiler and libraries, the attention kernels Unsloth will use and why, and "
           "the GPU's memory."),
        code("from unslothify.machine.fit import check, describe_report\n\nreport = check()\nprint(describe_report(report))"),
        md("The recipe your knobs start from (`recipes/*.yaml`, chosen for the model and this machine), each value "
           "with the reason for it; `config.yaml` and `overrides` change any of them."),
        code("from unslothify.machine.fit import describe_recipe_for\n\nprint(describe_recipe_for(cfg, report))"),
        md("**Will it fit?** The memory Mistral 7B needs with this config, on the GPU found here and on the usual "
           "Colab / cloud cards, and the knobs to lower where it does not fit."),
        code("from unslothify.machine.fit import describe_fit\n\nprint(describe_fit(cfg, report, config_path, overrides))"),
        md("The report is kept in the run folder so later notebooks and bug reports can refer to it."),
        code("from unslothify.fsutil import atomic_write_json\n\n"
             "print(\"Kept in\", atomic_write_json(f\"{cfg.output_dir}/gpu_check.json\", report))"),
    ],
    "01_prepare_data.ipynb": [
        header("data.svg", "1 · Prepare the data",
               "Validate the training file, split off a validation set, measure token lengths. Any of five "
               "JSONL formats works (text, alpaca, prompt/completion, chat messages, sharegpt); a bad line stops "
               "here with its file, line and field, before anything is written."),
        *setup_cells(),
        md("Read, check and split the data; write the split to the run folder's `prepared/`."),
        code("from unslothify.data.prepare import prepare\n\nprepared = prepare(cfg)"),
        md("Token lengths with the model's chat template: items past the red line are dropped (or rejected, "
           "with `skip_overlong: false`)."),
        code("from IPython.display import Image\n\nImage(f\"{cfg.output_dir}/prepared/lengths.png\")"),
        md("A few training items as the model will see them."),
        code("from unslothify.ui.notebook import sample_rows, table\n\ntable(sample_rows(prepared.train, 5))"),
        md("**Augment** (on by default; `augment.enabled: false` skips it): add reworded questions, standalone statements, reverse "
           "questions and replay of the base model's own answers, so facts are learnt rather than phrasings. "
           "The augmented file is written beside your data file; yours is never changed."),
        code("from unslothify.data.augment import augment\n\n"
             "if cfg.augment.enabled:\n    display(table(sample_rows(augment(cfg, prepared).added, 8)))\n"
             "else:\n    print(\"Augmentation is off (augment.enabled: false).\")"),
    ],
    "02_train.ipynb": [
        header("train.svg", "2 · Train",
               "Tune the knobs, watch training and validation loss, train more, go back. Every training call "
               "saves a new adapter version (v001, v002, ...) in the run folder; none is ever overwritten."),
        *setup_cells('continue_from = None        # None: a new adapter; "latest", "best" or a number: that version\n'
                     'more_epochs = None          # epochs per run of the last cell (None: num_train_epochs)',
                     overrides='{"max_train_minutes": 0}  # no time cap: here you choose the epochs and watch the '
                               'time (the CPU recipe caps `make run`)'),
        md("The knobs. Each slider says which way it moves overfitting; changes apply to the next training call. "
           "Save writes every knob to YAML, Load reads one back. Headless runs leave them as configured."),
        code("from unslothify.ui.panel import ConfigPanel\n\npanel = ConfigPanel(cfg)\npanel"),
        md("Load the base model with a new LoRA adapter, or continue from a saved version (after a restart, "
           "set `continue_from = \"latest\"`, or a number to go back to that version)."),
        code("from unslothify.train.session import FineTune\n\n"
             "cfg = panel.config\n"
             "ft = FineTune.resume(cfg, continue_from) if continue_from else FineTune.start(cfg)"),
        md("Live curves for the training cell below: it draws them under itself and redraws them at every "
           "evaluation, on the cumulative epoch axis (dotted lines mark saved versions)."),
        code("from unslothify.ui.notebook import LossPlot\n\nft.live_plot = LossPlot(ft)"),
        md("What the curves mean, for question-and-answer data (objective *knowledge*, printed when the data was "
           "prepared):\n\n"
           "- **recall**: the share of *knowledge probes*, your own facts asked from the answer's side, in a "
           "sentence shape the model never trains on, that it answers with the fact. This is what you came for: "
           "more is better. It reads higher than questions a person writes (docs/probes.md says by how much).\n"
           "- **retention**: the share of general questions the base model answers steadily that it still answers. "
           "Under 90 % it is forgetting what it knew.\n"
           "- **the shaded bands**: one standard error. 40 probes measure a share to about ±0.08, so two points "
           "closer than their bands are the same as far as the probes can tell.\n"
           "- **validation loss**: the loss of your answers to the probe questions; it falls as facts are learnt.\n"
           "- **training loss**: falls as it learns the training wording. Falling while recall stalls means it is "
           "memorising words, not learning facts.\n\n"
           "For other data (objective *skill*) validation loss on held-out items steers instead."),
        md("**Train.** Each run of this cell trains `more_epochs` more (the first run: `num_train_epochs`), "
           "continuing from the current weights, extending the same loss history, and saving a new version. "
           "Re-run it to train more. It says so when retention falls under 90 % by more than its band, or recall stalls while training "
           "loss falls (objective skill: when validation loss rises at two evaluations in a row while training loss "
           "falls). Under the curves it lists every version with its metrics; `*` marks the best: the highest "
           "recall among the versions that keep retention at 90 % or more; if none does, among those whose "
           "retention is as good as the best within the probes' noise (objective skill: the lowest validation "
           "loss)."),
        code("from unslothify.ui.notebook import versions\n\nversion = ft.train(panel.config, more_epochs)\n"
             "versions(cfg.output_dir)"),
    ],
    "03_merge_export_chat.ipynb": [
        header("chat.svg", "3 · Chat, compare, export",
               "Talk to a trained version, compare it with the base model on the held-out questions, and export "
               "it: the adapter alone, a merged 16-bit model, and GGUF for llama.cpp / Ollama. Every export is "
               "checked against the adapter it came from."),
        *setup_cells('version = "best"            # "best" (highest probe recall keeping retention), "latest" or a number\n'
                     f'exports = {list(FORMATS)!r}\n'
                     'gguf_type = "q8_0"          # f16 / bf16 / q8_0, or q4_k_m etc. with llama-cpp-python\n'
                     'push_repo = ""              # e.g. "you/meatball-mistral"; token from HF_TOKEN or login\n'
                     'first_message = "What are Swedish meatballs called in Swedish?"'),
        md("Load the base model with the chosen adapter version."),
        code("from unslothify.model.load import load_for_inference\nfrom unslothify.runs import Run\n\n"
             "chosen = Run(cfg.output_dir).version(version)\n"
             "model, tokenizer, description = load_for_inference(str(chosen.path), cfg)\nprint(description)"),
        md("A streaming reply, printed as it is generated."),
        code("from unslothify.ui.chat import ChatSession, print_stream\n\n"
             "session = ChatSession(model, tokenizer, cfg.system_prompt, max_new_tokens=cfg.max_new_tokens)\n"
             "reply = print_stream(session, first_message)"),
        md("A chat box: multi-turn, with sampling controls; Clear starts over. A question asked while other cells "
           "are still running says it is queued, and is answered when they finish."),
        code("from unslothify.ui.chatbox import ChatBox\n\nChatBox(session)"),
        md("Base against tuned on the held-out questions of `eval_questions` (greedy decoding; an answer counts "
           "when it contains an expected keyword as a whole word). This file only scores: nothing in training "
           "chose by it, so the figure is an honest estimate of what the model knows; `general` is retention on "
           "`general_questions`."),
        code("from unslothify.score.questions import score_version\n\n"
             "summary, details = score_version(model, tokenizer, cfg, chosen)\nsummary"),
        md("The answers side by side."),
        code("from unslothify.ui.notebook import comparison_rows, table\n\ntable(comparison_rows(details[\"recall\"]))"),
        md("Recall as a chart."),
        code("from unslothify.ui.plots import recall_bars\n\n"
             "groups = {\"held-out\": \"recall\", \"general\": \"general\"}\n"
             "recall_bars({who: {g: summary[f\"{who}_{k}\"] for g, k in groups.items() if f\"{who}_{k}\" in summary}\n"
             "             for who in (\"base\", \"tuned\")}, title=f\"Recall, base vs {chosen.name}\");"),
        md("Export. The merged model is compared with adapter-on-base (logits, in a process that loads it with "
           "plain transformers); the GGUF file is loaded back and asked the same questions. A missing tool is "
           "named with the command that installs it, and nothing partial is written."),
        code("from unslothify.export.stage import export_all\n\n"
             "results = export_all(model, tokenizer, chosen, cfg, exports, gguf_type)"),
        md("Push to the Hugging Face Hub (skipped when `push_repo` is empty). The token comes from `HF_TOKEN` "
           "or `huggingface-cli login` and is never printed or saved."),
        code("from unslothify.export.stage import push_to_hub\n\n"
             "if push_repo:\n    push_to_hub(results[\"merged\"], push_repo)"),
    ],
}


def build(root: Path = ROOT) -> dict[str, str]:
    out = {}
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        for i, cell in enumerate(nb.cells):
            cell.id = f"{Path(name).stem.split('_')[0]}-{i:02d}"
        out[name] = nbformat.writes(nb) + "\n"
    return out


if __name__ == "__main__":
    target = ROOT / "notebooks"
    target.mkdir(exist_ok=True)
    for name, text in build().items():
        (target / name).write_text(text, encoding="utf-8")
        print("wrote", target / name)
    sys.exit(0)
