"""Exports of a trained version, each verified: merged 16-bit (plain transformers, logits against
adapter-on-base), GGUF (read back by transformers and llama.cpp), adapter copy; clear errors, nothing partial."""

import json

import pytest

from unslothify.errors import ExportError
from unslothify.export.stage import export_adapter, export_merged
from unslothify.fsutil import check_disk
from unslothify.export.gguf import export_gguf, find_converter, verify_gguf
from unslothify.export.verify import (SAMPLE_PROMPTS, ChecksAhead, plain_transformers_outputs, sample_prompt_ids,
                                      verify_merged)


@pytest.fixture(scope="module")
def merged(trained, tmp_path_factory):
    cfg, ft, version = trained
    out = tmp_path_factory.mktemp("exports") / "merged"
    path, check = export_merged(ft.model, ft.tokenizer, out)
    return path, check


@pytest.mark.slow
def test_merged_model_matches_adapter_on_base_and_loads_plainly(merged, trained):
    path, check = merged
    assert check.ok and check.relative <= check.tolerance and check.top1_agreement >= 0.98
    assert check.max_abs_diff > 0, "a 16-bit merge differs by a small, nonzero amount"
    files = {p.name for p in path.iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] in ("bfloat16", "float16")
    _, ft, _ = trained
    # bf16 rounding of the merged weights can flip a near-tie late in a continuation (2 of 3 on 2026-12-06, with
    # every top-1 token of the prompts equal): the logits above are the strict check, the answers the user's one
    assert check.greedy_equal >= check.n_prompts - 1, "the merged model answers the sample prompts as the adapter did"
    # where the export stage's seconds go: each side's phases in its own process, within the wall of both
    for side in ("reference", "export"):
        assert set(check.seconds[side]) == {"imports", "load", "answers"}
        assert 0 < sum(check.seconds[side].values()) <= check.seconds["both"] + 0.2
    assert json.loads((path / "unslothify_export.json").read_text())["check"]["seconds"] == check.seconds
    out = plain_transformers_outputs(path, sample_prompt_ids(ft.tokenizer, ["Who keeps the lighthouse?"]))
    assert ft.tokenizer.decode(out["greedy"][0], skip_special_tokens=True).strip(), "it answers in words"


@pytest.mark.slow
def test_verification_catches_a_wrong_merge(merged, trained, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    path, _ = merged
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    weights = load_file(broken / "model.safetensors")
    key = next(k for k in weights if "layers.3.mlp.down_proj" in k)
    weights[key] = weights[key] + 0.05 * torch.randn_like(weights[key].float()).to(weights[key].dtype)
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    _, ft, _ = trained
    check = verify_merged(ft.model, ft.tokenizer, broken, sample_prompt_ids(ft.tokenizer, ["What is Brellmouth?"]))
    assert not check.ok


def plain_checks_running() -> list:
    import psutil

    return [c for c in psutil.Process().children(recursive=True) if "plain_check" in " ".join(c.cmdline())]


@pytest.mark.slow
def test_checks_started_ahead_judge_as_fresh_ones_and_end(merged, trained):
    """`run` starts the check's two processes when training begins on a GPU (ChecksAhead): they import while
    they wait, so the check's wall holds only their loading and answers, and the verdict is the same. One that
    ended while it waited (killed while training ran) is replaced by a fresh process."""
    path, fresh = merged
    _, ft, _ = trained
    with ChecksAhead() as ahead:
        ahead.waiting["export"][0].kill()
        check = verify_merged(ft.model, ft.tokenizer, path, sample_prompt_ids(ft.tokenizer, SAMPLE_PROMPTS),
                              ahead=ahead)
    assert check.ok and check.greedy_equal == fresh.greedy_equal
    assert check.max_abs_diff == pytest.approx(fresh.max_abs_diff, rel=1e-3)
    assert set(check.seconds["reference"]) == {"imports", "waited", "load", "answers"}
    assert set(check.seconds["export"]) == {"imports", "load", "answers"}, "the killed one's side ran afresh"
    waited = check.seconds["reference"]
    assert waited["load"] + waited["answers"] <= check.seconds["both"] + 0.2
    with ChecksAhead():  # a run that fails before its export leaves nothing waiting
        pass
    assert not plain_checks_running()


def test_a_check_that_cannot_load_its_model_ends_the_other_and_names_what_failed(merged, trained, tmp_path):
    """The two checks run side by side where both fit (this model does): when the export cannot be loaded, the
    error names it and the reference's process is ended with it, not left running."""
    import shutil

    path, _ = merged
    broken = tmp_path / "no-weights"
    shutil.copytree(path, broken)
    for f in broken.glob("*.safetensors"):
        f.unlink()
    _, ft, _ = trained
    with pytest.raises(ExportError, match="could not load .*no-weights"):
        verify_merged(ft.model, ft.tokenizer, broken, sample_prompt_ids(ft.tokenizer, ["What is Brellmouth?"]))
    assert not plain_checks_running()


@pytest.mark.slow
def test_gguf_round_trip(merged, trained, tmp_path):
    path, _ = merged
    _, ft, _ = trained
    gguf = export_gguf(path, tmp_path / "model.Q8_0.gguf", "q8_0")
    assert gguf.stat().st_size > 50_000_000 and gguf.read_bytes()[:4] == b"GGUF"
    check = verify_gguf(gguf, path, ft.tokenizer)
    assert check.same_answers >= 2 and check.logits.top1_agreement >= 0.9
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.skip("llama-cpp-python not installed (make test installs it)")
    assert check.llama_cpp_answers and all(check.llama_cpp_answers)


def test_missing_converter_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ExportError) as e:
        find_converter()
    assert "python -m unslothify setup-gguf" in str(e.value) and "Nothing was written" in str(e.value)
    merged_dir = tmp_path / "m"
    merged_dir.mkdir()
    with pytest.raises(ExportError):
        export_gguf(merged_dir, tmp_path / "out.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_quantized_types_without_llama_cpp_name_the_package(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_llama_cpp(name, *args, **kwargs):
        if name == "llama_cpp":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama_cpp)
    try:
        find_converter()
    except ExportError:
        pytest.skip("converter not set up")
    with pytest.raises(ExportError, match="llama-cpp-python==0.3.36"):
        export_gguf(tmp_path, tmp_path / "out.gguf", "q4_k_m")
    assert not (tmp_path / "out.gguf").exists()


def test_disk_check_names_the_shortfall(tmp_path):
    with pytest.raises(ExportError, match=r"Not enough disk space .* GiB free"):
        check_disk(tmp_path, 1 << 60, "the merged 16-bit model")


@pytest.mark.slow
def test_adapter_export_is_the_version(trained, tmp_path):
    _, _, version = trained
    out = export_adapter(version.path, tmp_path / "adapter")
    assert (out / "adapter_model.safetensors").read_bytes() == (version.path / "adapter_model.safetensors").read_bytes()
    assert (out / "manifest.json").exists()
    # below adapter_scale 1 (config.py's 0.8; the CPU recipe keeps 1.0) the lora_B weights carry the scale
    import torch
    from safetensors.torch import load_file

    scaled = load_file(export_adapter(version.path, tmp_path / "scaled", 0.5) / "adapter_model.safetensors")
    saved = load_file(version.path / "adapter_model.safetensors")
    assert any("lora_B" in k for k in saved) and saved.keys() == scaled.keys()
    for k, v in saved.items():
        assert torch.equal(scaled[k], v * 0.5 if "lora_B" in k else v), k


@pytest.mark.slow
def test_a_format_that_cannot_be_made_is_skipped_and_the_others_kept(trained, tmp_path, monkeypatch):
    """Notebook 03 exports every format by default: without llama.cpp's converter it still makes the adapter
    and the merged model, says GGUF was skipped and the command that fixes it, and records it."""
    import json

    from unslothify.config import replace
    from unslothify.export.stage import export_all

    cfg, ft, version = trained
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    said = []
    results = export_all(ft.model, ft.tokenizer, version, replace(cfg, output_dir=str(tmp_path / "run")),
                         progress=said.append)
    assert set(results) >= {"adapter", "merged", "merge_check"} and "gguf" not in results
    assert "python -m unslothify setup-gguf" in results["skipped"]["gguf"]
    assert any(m.startswith("Skipping GGUF") for m in said) and any("skipped gguf" in m for m in said)
    assert (results["merged"] / "model.safetensors").exists() and (results["adapter"] / "adapter_config.json").exists()
    recorded = json.loads((tmp_path / "run" / "exports" / "exports.json").read_text())
    assert "gguf" in recorded["skipped"] and recorded["merged"] == str(results["merged"])


@pytest.mark.slow
def test_gguf_tensors_read_back_without_loading_the_model(trained, tmp_path):
    """The GGUF check of a model too large to dequantise in RAM (a 7B on Colab): gguf-py reads a few tensors
    back, one at a time, and they match the merged weights to within the quantisation."""
    from unslothify.export.stage import export_merged
    from unslothify.export.gguf import TENSOR_TOLERANCE, export_gguf, find_converter, tensor_check

    try:
        find_converter()
    except ExportError:
        pytest.skip("converter not set up (make install fetches it)")
    _, ft, _ = trained
    merged, _ = export_merged(ft.model, ft.tokenizer, tmp_path / "merged", progress=lambda *_: None)
    gguf = export_gguf(merged, tmp_path / "m.Q8_0.gguf", "q8_0", progress=lambda *_: None)
    diffs = tensor_check(gguf, merged)
    assert "token_embd.weight" in diffs and "blk.0.ffn_down.weight" in diffs
    assert 0 < max(diffs.values()) <= TENSOR_TOLERANCE
