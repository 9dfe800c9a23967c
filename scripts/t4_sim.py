#!/usr/bin/env python3
"""The free Colab T4, simulated on a larger GPU: the default Mistral 7B recipe end to end under a T4's limits.

Limits: every process of the run may take 15 GiB of GPU memory (gpu_memory_gib: torch's per-process fraction,
inherited by the checks the run starts), bf16 is off (the T4 path: fp16), each process's peak RSS is measured
against a Colab runtime's 12.7 GB of RAM, and the disk written is measured. The model is Mistral-7B-shaped
(Mistral 7B v0.2's shapes: 32 layers, hidden 4096, 32 heads / 8 KV heads, MLP 14336, vocab 32000; v0.3 adds
768 tokens, 2 % of the embeddings) with random weights, saved
pre-quantised in 4-bit as the Hub's -bnb-4bit checkpoints are; the tokenizer is LLaMA's SentencePiece
vocabulary (Mistral v0.1's) with Mistral's [INST] chat template.

    python -m scripts.t4_sim build --work /tmp/t4      # the 4-bit checkpoint (a few minutes, once)
    python -m scripts.t4_sim run --work /tmp/t4        # as `run` does: load, replay, train 1 epoch, save, merge + check
    python -m scripts.t4_sim export --work /tmp/t4     # as notebook 03 does: GGUF q8_0 + check, a chat reply
    python -m scripts.t4_sim report                    # docs/t4.md from the stage rows

The stages may run in separate device calls (a call is at most 10 minutes): `build` and `run` in one, `export`
in the next while the machine is warm (it keeps /tmp). `scripts/gpu_check.sh t4-run t4-export` runs them.
Each stage appends one JSON line to WORK/stages.jsonl; `report` renders them with the projected T4 times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "t4.md"
RESULTS = ROOT / "docs" / "measurements" / "t4-stages.jsonl"
MEASUREMENTS_NOTES = ROOT / "docs" / "measurements" / "t4-notes.md"  # what the runs show; written by hand
T4_GPU_GIB = 15.0
T4_RAM_GB = 12.7
MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                  rope_theta=1000000.0, sliding_window=None, tie_word_embeddings=False, rms_norm_eps=1e-5)
MISTRAL_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
                    "{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
# How a stage's H200 time becomes a T4 time: by the resource that bounds it. GPU arithmetic: dense fp16 tensor
# rate, T4 65 TFLOP/s against the 790 TFLOP/s measured here for bf16 on the H200 (KINDS.md); GPU memory traffic
# (token-by-token generation): 300 GB/s against the 4,300 GB/s measured; disk and CPU work (loading, writing,
# converting, llama.cpp on CPU): a Colab runtime's 2 vCPUs and network disk against this machine's 16 cores and
# local disk, taken as 4x (a lower bound: the converter and the shard writer are single-threaded).
RATIOS = {"compute": 790 / 65, "bandwidth": 4300 / 300, "host": 4.0}
STAGE_BOUND = {"load": "host", "replay": "bandwidth", "train": "compute", "save": "host", "merge": "host",
               "merge check": "host", "gguf": "host", "gguf check": "host", "chat": "bandwidth"}


# ----------------------------------------------------------------------------------------------------------
# Measuring a stage: wall time, this process's GPU peaks (torch), the GPU memory of every process of the run
# (the driver's view), peak RSS of this process and its children, and the disk written under WORK.
# ----------------------------------------------------------------------------------------------------------

class Sampler:
    """Samples, every 0.2 s, GPU memory per process (NVML) and RSS of this process and its children."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()
        self.nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
        except Exception:
            pass
        self.reset()
        self._stop = False
        threading.Thread(target=self._loop, daemon=True).start()

    def reset(self):
        self.gpu_total = self.rss_self = self.rss_child = self.anon_self = self.anon_child = 0.0

    def _loop(self):
        import psutil

        while not self._stop:
            try:
                kids = self.me.children(recursive=True)
                pids = {self.me.pid, *(k.pid for k in kids)}
                self.rss_self = max(self.rss_self, self.me.memory_info().rss / 1e9)
                self.anon_self = max(self.anon_self, _anon_gb(self.me.pid))
                for k in kids:
                    try:
                        self.rss_child = max(self.rss_child, k.memory_info().rss / 1e9)
                        self.anon_child = max(self.anon_child, _anon_gb(k.pid))
                    except (psutil.NoSuchProcess, OSError):
                        pass
                if self.nvml:
                    pynvml, handle = self.nvml
                    used = sum(p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                               if p.pid in pids)
                    self.gpu_total = max(self.gpu_total, used / 2**30)
            except Exception:
                pass
            time.sleep(0.2)


def _anon_gb(pid: int) -> float:
    """Anonymous resident memory (RssAnon): what must fit in RAM. RSS also counts pages of files a process has
    mapped (safetensors shards are mmapped), which the kernel drops under pressure rather than running out."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1e6
    return 0.0


def _disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


class Stages:
    """with stages.stage("train"): ... appends the stage's row to WORK/stages.jsonl."""

    def __init__(self, work: Path, process: str):
        self.work, self.process = work, process
        self.sampler = Sampler()

    def stage(self, name: str):
        stages = self

        class _Stage:
            def __enter__(self):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                stages.sampler.reset()
                self.disk0 = _disk(stages.work)
                self.t0 = time.perf_counter()
                print(f"--- stage {name} ---", flush=True)
                return self

            def __exit__(self, *exc):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - self.t0
                cuda = torch.cuda.is_available()
                row = {"stage": name, "process": stages.process, "ok": exc[0] is None,
                       "seconds": round(seconds, 1),
                       "gpu_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                       "gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
                       "gpu_all_processes_gib": round(stages.sampler.gpu_total, 2) if stages.sampler.nvml else None,
                       "rss_gb": round(stages.sampler.rss_self, 2),
                       "rss_high_water_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                       "rss_child_gb": round(stages.sampler.rss_child, 2),
                       "anon_gb": round(stages.sampler.anon_self, 2), "anon_child_gb": round(stages.sampler.anon_child, 2),
                       "disk_written_gb": round(max(0, _disk(stages.work) - self.disk0) / 1e9, 2),
                       "error": repr(exc[1])[:300] if exc[1] else None,
                       "machine": _machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                for path in {stages.work / "stages.jsonl", *([Path(os.environ["OUT"]) / "t4-stages.jsonl"]
                                                             if os.environ.get("OUT") else [])}:
                    with path.open("a") as f:  # also under $OUT on the device machine: kept if a later stage is cut
                        f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
                return False

        return _Stage()


def _machine() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"


def as_t4():
    """This process as a T4 would run it: bf16 off (Unsloth sets torch.cuda.is_bf16_supported on import, so it
    is patched after), and 15 GiB of GPU memory for every process of the run."""
    os.environ["UNSLOTHIFY_GPU_MEMORY_GIB"] = str(T4_GPU_GIB)
    import torch
    import unsloth  # noqa: F401

    torch.cuda.is_bf16_supported = lambda *a, **k: False


# ----------------------------------------------------------------------------------------------------------
# build: the Mistral-7B-shaped checkpoint, pre-quantised in 4-bit
# ----------------------------------------------------------------------------------------------------------

def mistral_tokenizer(folder: Path):
    """LLaMA's SentencePiece vocabulary (Mistral v0.1's 32000 tokens), from the vocabulary-only GGUF llama.cpp
    ships for its tokenizer tests (ggml-vocab-llama-spm.gguf in the llama-cpp-python sdist), with Mistral's
    [INST] template; made once into `folder` (building its merges takes a minute), then read from there."""
    from transformers import AutoTokenizer

    if (folder / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="ggml-vocab-llama-spm.gguf")
    tok.eos_token, tok.pad_token = "</s>", "<unk>"
    tok.chat_template = MISTRAL_TEMPLATE
    tok.save_pretrained(folder)
    return tok


def cmd_build(args):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, MistralConfig

    work = Path(args.work)
    target = work / "mistral7b-shaped-q4"
    if (target / "config.json").exists():
        print(f"{target} exists")
        return
    dims = MISTRAL_7B if not args.tiny else {**MISTRAL_7B, "hidden_size": 256, "intermediate_size": 512,
                                              "num_hidden_layers": 2, "num_attention_heads": 4,
                                              "num_key_value_heads": 2, "head_dim": 64}
    t0 = time.perf_counter()
    tok = mistral_tokenizer(Path(args.tokenizer))
    config = MistralConfig(**dims, bos_token_id=1, eos_token_id=2, pad_token_id=0, dtype="float16")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
    fp16 = work / "fp16"
    model.save_pretrained(fp16, max_shard_size="2GB")
    tok.save_pretrained(fp16)
    del model
    torch.cuda.empty_cache() if device == "cuda" else None
    print(f"fp16 random model in {time.perf_counter() - t0:.0f} s", flush=True)
    if device == "cuda":
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float16)
        model = AutoModelForCausalLM.from_pretrained(fp16, quantization_config=q, dtype=torch.float16,
                                                     device_map="cuda")
        model.save_pretrained(target)
        tok.save_pretrained(target)
        shutil.rmtree(fp16)
    else:  # a CPU smoke test of this script: no 4-bit
        fp16.rename(target)
    print(f"built {target} in {time.perf_counter() - t0:.0f} s", flush=True)


# ----------------------------------------------------------------------------------------------------------
# run: as `run` does it
# ----------------------------------------------------------------------------------------------------------

def _config(work: Path, epochs: float, knobs: dict | None = None):
    from unslothify.config import load_config

    data = work / "domain.jsonl"
    shutil.copy2(ROOT / "domain.jsonl", data)  # the augmented file is written beside it
    return load_config(None, model=str(work / "mistral7b-shaped-q4"), recipe="mistral-7b-qlora",
                       data=str(data), output_dir=str(work / "run"), num_train_epochs=epochs,
                       gpu_memory_gib=T4_GPU_GIB if _cuda() else 0.0, **(knobs or {}))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cmd_run(args):
    work = Path(args.work)
    if _cuda():
        as_t4()
    from unslothify.data.augment import augment
    from unslothify.export.stage import export_merged
    from unslothify.data.prepare import prepare
    from unslothify.train.session import FineTune

    stages = Stages(work, "run")
    cfg = _config(work, args.epochs, json.loads(args.knobs))
    with stages.stage("load"):
        prepared = prepare(cfg, plot=False)
        ft = FineTune.start(cfg)
    with stages.stage("replay"):
        augment(cfg, prepared, print, ft.model, ft.tokenizer)
    saving = {}
    save_version = ft.save_version

    def timed_save(*a, **k):
        t0 = time.perf_counter()
        try:
            return save_version(*a, **k)
        finally:
            saving["seconds"] = time.perf_counter() - t0

    ft.save_version = timed_save
    with stages.stage("train"):
        version = ft.train(cfg)
    with (work / "stages.jsonl").open("a") as f:  # saving happened inside the training call: its own row
        f.write(json.dumps({"stage": "save", "process": "run", "ok": True, "seconds": round(saving["seconds"], 1),
                            "inside": "train", "machine": _machine(),
                            "disk_written_gb": round(_disk(version.path) / 1e9, 3)}) + "\n")
    print(f"version {version.name}: {json.dumps({k: version.manifest[k] for k in ('train_seconds', 'epochs_trained', 'precision', 'peak_memory_gib', 'final_probe_recall')})}")
    with stages.stage("merge"):
        merged, check = export_merged(ft.model, ft.tokenizer, ft.run.exports / "merged", version=version)
    print("merge check:", json.dumps(check.as_dict()))
    (work / "version.txt").write_text(str(version.path))


# ----------------------------------------------------------------------------------------------------------
# export: as notebook 03 does it, in a new process
# ----------------------------------------------------------------------------------------------------------

def cmd_export(args):
    work = Path(args.work)
    if _cuda():
        as_t4()
    from unslothify.ui.chat import ChatSession
    from unslothify.export.gguf import export_gguf, verify_gguf
    from unslothify.model.load import load_for_inference

    stages = Stages(work, "export")
    cfg = _config(work, args.epochs, json.loads(args.knobs))
    version = Path((work / "version.txt").read_text())
    merged = work / "run" / "exports" / "merged"
    out = work / "run" / "exports" / "t4.Q8_0.gguf"
    with stages.stage("gguf"):
        gguf = export_gguf(merged, out, "q8_0")
    with stages.stage("gguf check"):
        from transformers import AutoTokenizer

        check = verify_gguf(gguf, merged, AutoTokenizer.from_pretrained(merged))
    print("gguf check:", check.summary())
    with stages.stage("chat"):
        model, tokenizer, _ = load_for_inference(str(version), cfg)
        reply = ChatSession(model, tokenizer, max_new_tokens=32, temperature=0.0).send(
            "How long should I fry the meatballs?")
    print("chat reply:", repr(reply[:200]))
    assert reply, "a reply"


# ----------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------

def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


ALL_STAGES = ["load", "replay", "train", "save", "merge", "gguf", "gguf check", "chat"]


def _stage_line(r: dict) -> tuple[str, float, bool]:
    """One table line for a measured stage, its projected T4 seconds, and whether it kept within the limits."""
    bound = STAGE_BOUND.get(r["stage"], "host")
    t4 = r["seconds"] * RATIOS[bound]
    gpu = r.get("gpu_all_processes_gib")
    rss = max(r.get("anon_gb", r.get("rss_gb")) or 0, r.get("anon_child_gb", r.get("rss_child_gb")) or 0)
    fits = (gpu is None or gpu <= T4_GPU_GIB) and rss <= T4_RAM_GB and r.get("ok", True)
    line = (f"| {r['stage']}{' (in train)' if r.get('inside') else ''} | {r.get('run', 1)} | {r['seconds']:.0f} | "
            f"{r.get('gpu_allocated_gib', '–')} / {r.get('gpu_reserved_gib', '–')} | {gpu if gpu is not None else '–'} | "
            f"{r.get('rss_gb', '–')} ({r.get('anon_gb', 'not measured')}) / {r.get('rss_child_gb', '–')} "
            f"({r.get('anon_child_gb', 'not measured')}) | {r.get('disk_written_gb', '–')} | {bound} | "
            f"{t4 / 60:.1f} min | {'yes' if fits else '**no**'} |")
    return line, t4, fits


def _fit_check(rows: list[dict]) -> list[str]:
    """Notebook 00's "Will it fit?" figure for the recipe against the training stage's measured peaks."""
    from unslothify.config import load_config
    from unslothify.machine.fit import memory_needed_gib

    train = [r for r in rows if r["stage"] == "train" and r.get("gpu_reserved_gib")]
    if not train:
        return []
    need = memory_needed_gib(load_config(None, recipe="mistral-7b-qlora"))
    measured = max(r["gpu_all_processes_gib"] for r in train)
    return ["## Will it fit?", "",
            f"Notebook 00 says the recipe needs {need} GiB; the training stage measured {measured} GiB on the card "
            f"(all processes, torch's reserved peak {max(r['gpu_reserved_gib'] for r in train)} GiB), "
            f"{100 * (need - measured) / measured:+.0f} %. Its first model, fitted to the training-only benchmark, "
            "said 6.1 GiB (-37 %): a run also generates (replay, the probes at each evaluation) and trains in fp16, "
            "and the model now adds what that measured (`RUN_EXTRA_GIB` in unslothify/machine/fit.py).", ""]


def _partial_runs(rows: list[dict]) -> list[str]:
    """A table per run that measured some stages only (its note says which and why)."""
    out = []
    for run in sorted({r["run"] for r in rows if r.get("partial")}):
        own = [r for r in rows if r.get("run") == run]
        out += [f"Run {run}, {own[0]['machine']}, {own[0]['date'][:10]}: {own[0].get('note', '')}.", "",
                "| stage | seconds | GPU, all processes of the run, GiB | within the T4's 15 GiB |", "|---|---|---|---|"]
        out += [f"| {r['stage']} | {r['seconds']} | {r.get('gpu_all_processes_gib')} | "
                f"{'yes' if (r.get('gpu_all_processes_gib') or 0) <= T4_GPU_GIB else 'no'} |" for r in own]
        out.append("")
    return out


def latest_stages(rows: list[dict]) -> dict:
    """Each stage from the latest whole run that reached it: a partial run (some stages only, its note says why)
    gets its own table in the report."""
    return {r["stage"]: r for r in rows if not r.get("partial")}


def cmd_report(args):
    rows = [json.loads(x) for x in Path(args.results).read_text().splitlines() if x.strip()]
    machine = next((r["machine"] for r in rows if r.get("machine")), "?")
    dates = sorted({r["date"][:10] for r in rows if r.get("date")}) or ["?"]
    latest = latest_stages(rows)
    lines = ["# The free Colab T4, simulated", "",
             f"Made by `python -m scripts.t4_sim report` from `{_shown(Path(args.results))}`: the default "
             f"Mistral 7B recipe (recipes/mistral-7b-qlora.yaml) end to end on {machine}, {dates[-1]}, under a T4's "
             f"limits (scripts/t4_sim.py says how: {T4_GPU_GIB:g} GiB of GPU memory for every process of the run, "
             f"bf16 off, RSS against {T4_RAM_GB} GB of RAM, a Mistral-7B-shaped model with random weights saved in "
             "4-bit). One epoch of domain.jsonl with the default augmentation. Each stage is shown from the latest "
             "run that reached it (column run).", "",
             "| stage | run | H200 seconds | GPU allocated / reserved, GiB (this process) | GPU, all processes "
             "of the run, GiB | peak RSS (anonymous), GB: process / largest child | disk written, GB | bound by | "
             "projected T4 time | within the T4's limits |", "|---|---|---|---|---|---|---|---|---|---|"]
    total_h200 = total_t4 = 0.0
    missing = []
    for stage in ALL_STAGES:
        if stage not in latest:
            missing.append(stage)
            lines.append(f"| {stage} | – | not measured | | | | | {STAGE_BOUND[stage]} | | |")
            continue
        line, t4, _ = _stage_line(latest[stage])
        lines.append(line)
        if not latest[stage].get("inside"):
            total_h200 += latest[stage]["seconds"]
            total_t4 += t4
    lines += ["", f"Measured stages all told: {total_h200 / 60:.1f} min on the H200; projected on a T4: about "
              f"{total_t4 / 60:.0f} min{' before the stages not measured' if missing else ''}.", "",
              *_partial_runs(rows),
              "Projection: each stage's H200 time times the ratio of the resource that bounds it: GPU arithmetic "
              f"x{RATIOS['compute']:.1f} (dense fp16 tensor rate, T4 65 TFLOP/s against 790 TFLOP/s measured for bf16 "
              f"on the H200), GPU memory traffic x{RATIOS['bandwidth']:.1f} (300 GB/s against 4,300 GB/s measured), "
              f"host work (loading, writing, converting, llama.cpp on the CPU) x{RATIOS['host']:.0f} (a Colab "
              "runtime's 2 vCPUs and network disk against 16 cores and local NVMe; a lower bound where the work is "
              "single-threaded).", ""]
    lines += _fit_check(rows)
    if args.extra and Path(args.extra).exists():
        lines += [Path(args.extra).read_text().strip(), ""]
    DOC.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--work", default="/tmp/t4")
    b.add_argument("--tokenizer", default=str(ROOT / ".gpu-assets" / "mistral-tokenizer"),
                   help="a folder with the tokenizer, or with ggml-vocab-llama-spm.gguf to make it from")
    b.add_argument("--tiny", action="store_true", help="a 2-layer model of the same vocabulary (a CPU smoke test)")
    for name in ("run", "export"):
        s = sub.add_parser(name)
        s.add_argument("--work", default="/tmp/t4")
        s.add_argument("--epochs", type=float, default=1.0)
        s.add_argument("--knobs", default="{}", help='knobs over the 7B recipe, e.g. \'{"retention_weight": 1}\'')
    r = sub.add_parser("report")
    r.add_argument("--results", default=str(RESULTS))
    r.add_argument("--extra", default=str(MEASUREMENTS_NOTES), help="notes appended after the tables")
    args = p.parse_args()
    Path(getattr(args, "work", "/tmp/t4")).mkdir(parents=True, exist_ok=True)
    {"build": cmd_build, "run": cmd_run, "export": cmd_export, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
