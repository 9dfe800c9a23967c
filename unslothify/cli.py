"""Command line: the notebooks' stages, headless.

    python -m unslothify run --data domain.jsonl --eval-questions eval/questions.jsonl
    python -m unslothify prepare|augment|train|versions|export|chat|eval --config config.yaml [--<knob> VALUE]

Every knob of the config is also a flag (--learning-rate 1e-4, --lora-r 8, ...); flags override the file,
which overrides the recipe (recipes/*.yaml) chosen for the model and machine. --epochs and --output are
short aliases of --num-train-epochs and --output-dir.
`run` and `eval` print one JSON object as their last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings

from .config import AugmentConfig, knob_fields, load_config
from .export.stage import FORMATS
from .knobs import ConfigError, describe_allowed

DEFAULT_CONFIG = "config.yaml"


def _add_knob_flags(p: argparse.ArgumentParser):
    g = p.add_argument_group("config knobs (override the file)")
    for f in knob_fields():
        flag = "--" + f.name.replace("_", "-")
        if flag in ("--model", "--data", "--eval-questions"):
            continue
        g.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                       help=f"{f.metadata['help']} ({describe_allowed(f)})")
    for f in dataclasses.fields(AugmentConfig):
        g.add_argument("--augment-" + f.name.replace("_", "-"), dest="augment__" + f.name, default=None,
                       metavar=f.name.upper(), help=f"{f.metadata['help']} ({describe_allowed(f)})")


def _flag_value(text: str):
    """Flags are read like YAML scalars, so `--lora-r 8` is the number 8 and `--packing true` a boolean."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


def config_from_args(args) -> "Config":  # noqa: F821
    overrides = {}
    augment = {}
    for f in knob_fields():
        v = getattr(args, f.name, None)
        if v is not None:
            overrides[f.name] = _flag_value(v) if isinstance(v, str) and f.type not in ("str", str) else v
    for f in dataclasses.fields(AugmentConfig):
        v = getattr(args, "augment__" + f.name, None)
        if v is not None:
            augment[f.name] = _flag_value(v) if f.type not in ("str", str) else v
    if augment:
        overrides["augment"] = augment
    if getattr(args, "epochs", None) is not None:
        overrides["num_train_epochs"] = args.epochs
    if getattr(args, "output", None) is not None:
        overrides["output_dir"] = args.output
    path = args.config
    if path == DEFAULT_CONFIG:
        from pathlib import Path

        path = path if Path(path).exists() else None
    return load_config(path, **overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unslothify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, help_text, knobs=True):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: config.yaml if present)")
        p.add_argument("--model", default=None, help="'auto', 'embedded', a hub id or a local folder")
        p.add_argument("--data", default=None, help="training data: JSONL, JSON, CSV, TSV or Parquet file, a saved "
                       "dataset folder, or a Hub dataset id; optional :split")
        p.add_argument("--eval-questions", dest="eval_questions", default=None,
                       help="JSONL of {question, expected}")
        p.add_argument("--output", default=None, help="run folder (an alias of --output-dir)")
        if knobs:
            _add_knob_flags(p)
        return p

    command("prepare", "Validate, split and measure the training data; writes <run>/prepared/.")
    command("augment", "Write the augmented training file beside the data file.")
    p = command("train", "Train (or continue) and save a new adapter version.")
    p.add_argument("--epochs", type=float, default=None, help="epochs for this call (an alias of --num-train-epochs)")
    p.add_argument("--from-version", default=None,
                   help="continue from this version (number, 'latest' or 'best'); default: a fresh adapter")
    p.add_argument("--resume", action="store_true", help="finish an interrupted training call")
    command("versions", "List adapter versions with their metrics; * marks the best validation loss.", knobs=False)
    p = command("export", "Export a version: adapter, merged 16-bit model, GGUF; optionally push to the Hub.")
    p.add_argument("--version", default="best", help="version number, 'latest' or 'best' (default)")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma list of {', '.join(FORMATS)}")
    p.add_argument("--gguf-type", default="q8_0", help="f16, bf16, q8_0 (converter) or q4_k_m, q5_k_m, ... (llama.cpp)")
    p.add_argument("--push", default=None, metavar="REPO_ID", help="push to this Hub repo (token from HF_TOKEN/login)")
    p.add_argument("--push-what", default="merged", choices=("merged", "adapter"))
    p.add_argument("--public", action="store_true", help="create the Hub repo public (default private)")
    p = command("chat", "Chat in the terminal with a version (default: best) or the base model.", knobs=False)
    p.add_argument("--version", default="best")
    p.add_argument("--base", action="store_true", help="chat with the base model instead")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-new-tokens", type=int, default=None, help="reply length cap (default: the max_new_tokens knob)")
    p = command("eval", "Score models on eval questions; last line is JSON.")
    p.add_argument("--version", default=None, help="with a run: the version to score (default best)")
    p = command("run", "prepare -> augment -> train -> export merged -> eval; last line is JSON.")
    p.add_argument("--epochs", type=float, default=None, help="training epochs (an alias of --num-train-epochs)")
    p.add_argument("--no-export", action="store_true", help="skip the merged export")
    command("setup-gguf", "Fetch llama.cpp's GGUF converter (from the llama-cpp-python sdist on PyPI).", knobs=False)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as e:
        from .data.items import DataError
        from .errors import ExportError, SetupError

        from .errors import OutOfMemory

        if isinstance(e, (DataError, ExportError, SetupError, FileNotFoundError)):
            print(f"Error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, OutOfMemory):
            print(f"Error: {e}", file=sys.stderr)
            return 3
        raise


def _dispatch(args) -> int:
    cmd = args.command
    if cmd == "setup-gguf":
        from .export.gguf import setup_gguf_tools

        setup_gguf_tools()
        return 0
    cfg = config_from_args(args)
    if cmd == "prepare":
        from .data.prepare import prepare

        prepare(cfg)
        return 0
    if cmd == "augment":
        from .data.augment import augment
        from .data.prepare import is_current, load_prepared, prepare

        prepared = load_prepared(cfg) if is_current(cfg) else prepare(cfg)
        augment(cfg, prepared)
        return 0
    if cmd == "train":
        return _train(cfg, args)
    if cmd == "versions":
        from .runs import Run, format_table, versions_table

        print(format_table(versions_table(Run(cfg.output_dir))))
        return 0
    if cmd == "export":
        return _export(cfg, args)
    if cmd == "chat":
        return _chat(cfg, args)
    if cmd == "eval":
        return _eval(cfg, args)
    if cmd == "run":
        from .pipeline import run_all

        summary = run_all(cfg, export=not args.no_export)
        print(json.dumps(summary), flush=True)
        if summary.get("interrupted"):
            return 130  # as `train` does: the checkpoint is kept, `train --resume` goes on
        return 4 if summary.get("merge_check", {}).get("ok") is False else 0
    raise AssertionError(cmd)


def _train(cfg, args) -> int:
    """--epochs is the config's num_train_epochs for this call (set in config_from_args); prepared/ is made again
    by the training call itself when it does not match the config."""
    from .runs import Run
    from .train.session import FineTune

    if args.resume:
        info = Run(cfg.output_dir).interrupted()
        if info is None:
            print(f"Error: nothing to resume in {Run(cfg.output_dir).checkpoints}.", file=sys.stderr)
            return 2
        ft = FineTune.resume(cfg, info["parent"]) if info["parent"] else FineTune.start(cfg)
        version = ft.train(resume=True)
    else:
        ft = FineTune.resume(cfg, args.from_version) if args.from_version else FineTune.start(cfg)
        version = ft.train(cfg)
    return 0 if version is not None else 130


def _export(cfg, args) -> int:
    from .export.stage import export_all
    from .export.hub import push_to_hub
    from .model.load import load_for_inference
    from .runs import Run

    v = Run(cfg.output_dir).version(args.version)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    model = tokenizer = None
    if "merged" in formats or "gguf" in formats:
        model, tokenizer, _ = load_for_inference(str(v.path), cfg)
    results = export_all(model, tokenizer, v, cfg, formats, args.gguf_type)
    if args.push:
        folder = results.get(args.push_what)
        if folder is None:
            raise FileNotFoundError(f"--push-what {args.push_what}: add it to --formats to export it first.")
        push_to_hub(folder, args.push, private=not args.public)
    return 0


def _chat(cfg, args) -> int:
    from .ui.chat import ChatSession, repl
    from .model.load import load_for_inference
    from .runs import Run

    spec = cfg.model if args.base else str(Run(cfg.output_dir).version(args.version).path)
    model, tokenizer, desc = load_for_inference(spec, cfg)
    print(f"Chatting with {desc}.")
    repl(ChatSession(model, tokenizer, cfg.system_prompt, args.temperature, args.top_p,
                     args.max_new_tokens or cfg.max_new_tokens))
    return 0


def _eval(cfg, args) -> int:
    from .score.questions import score_file, score_version
    from .model.load import load_for_inference
    from .runs import Run

    if args.model:  # one model, one file
        model, tokenizer, desc = load_for_inference(args.model, cfg)
        result, _ = score_file(model, tokenizer, cfg, cfg.eval_questions, desc)
        print(json.dumps({k: v for k, v in result.items() if k != "hits"}), flush=True)
        return 0
    v = Run(cfg.output_dir).version(args.version or "best")
    model, tokenizer, _ = load_for_inference(str(v.path), cfg)
    summary, _ = score_version(model, tokenizer, cfg, v)
    print(json.dumps({"version": v.name, **summary}), flush=True)
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("default")
    sys.exit(main())
