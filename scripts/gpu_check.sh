#!/usr/bin/env bash
# GPU verification and benchmark, in one command on a CUDA machine without network access.
#
#   bash scripts/gpu_check.sh prepare        # here (with network, once): .whl/ and .gpu-assets/bundle.tgz
#   bash scripts/gpu_check.sh [suite] [bench] [bench-quick] [accelerate]
#                                            # on the GPU machine; default: suite
#
# prepare   wheels the GPU image lacks (../shared/device/wheels.sh: unsloth, trl, datasets, bitsandbytes ...),
#           and a bundle of what the machine cannot download: the SmolLM2 tokenizer (for the random test
#           models), llama.cpp's GGUF converter (python -m unslothify setup-gguf) and domain.jsonl's token
#           lengths (scripts/benchmark.py lengths). Carry [".whl", ".gpu-assets/bundle.tgz"].
# suite     pytest tests/gpu -v: the whole pipeline on a small random Mistral (tests/gpu/conftest.py).
# bench     scripts/benchmark.py run: recipes on a Mistral-7B-shaped random model (docs/benchmark.md).
# bench-lean  the low-VRAM 4-bit rows beside the seed and notebook baselines, and large-step 16-bit MFU rows.
# bench-profile  torch.profiler over two steps of the 16-bit and 4-bit packed recipes: device busy vs wall.
# accelerate  `accelerate launch --num_processes N -m unslothify train` on the tiny model, N = GPUs present.
# Logs go to $OUT (or ./gpu-check-out): gpu_suite.log, junit.xml, benchmark.log, benchmark.json, env.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [ "${1:-}" = "prepare" ]; then
  set -e
  bash ../shared/device/wheels.sh
  . .venv/bin/activate 2>/dev/null || true
  python -m unslothify setup-gguf
  grep -qx '/.gpu-assets/' .git/info/exclude 2>/dev/null || echo '/.gpu-assets/' >> .git/info/exclude
  mkdir -p .gpu-assets/tokenizer
  python - <<'PY'
from unslothify.models import embedded_checkpoint
import shutil
src = embedded_checkpoint()
for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    if (src / name).exists():
        shutil.copy2(src / name, ".gpu-assets/tokenizer/" + name)
PY
  rm -rf .gpu-assets/llama.cpp
  cp -r "$(python -c 'from unslothify.export import llama_cpp_dir; print(llama_cpp_dir())')" .gpu-assets/llama.cpp
  find .gpu-assets -name __pycache__ -prune -exec rm -rf {} +
  python scripts/benchmark.py lengths
  tar -C .gpu-assets -czf .gpu-assets/bundle.tgz tokenizer llama.cpp domain_lengths.json
  du -sh .whl .gpu-assets/bundle.tgz
  exit 0
fi

OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
export TOKENIZERS_PARALLELISM=false
if [ -d .whl ] && ! python3 -c 'import unsloth' 2>/dev/null; then
  [ -d /tmp/site/unsloth ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
[ -f .gpu-assets/bundle.tgz ] && [ ! -d .gpu-assets/tokenizer ] && tar -C .gpu-assets -xzf .gpu-assets/bundle.tgz
export LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-$ROOT/.gpu-assets/llama.cpp}
export UNSLOTHIFY_TEST_TOKENIZER=${UNSLOTHIFY_TEST_TOKENIZER:-$ROOT/.gpu-assets/tokenizer}
export UNSLOTHIFY_CACHE=${UNSLOTHIFY_CACHE:-/tmp/unslothify-cache}

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'
  python3 -m pip list 2>/dev/null | grep -iE '^(unsloth|unsloth.zoo|trl|transformers|peft|bitsandbytes|accelerate|datasets|torch) '
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

rc=0
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(suite)
for step in "${steps[@]}"; do
  case "$step" in
    suite)
      timeout "${SUITE_TIMEOUT:-1800}" python3 -m pytest tests/gpu -v -rA -p no:cacheprovider --junitxml="$OUT/junit.xml" 2>&1 | tee "$OUT/gpu_suite.log"
      r=${PIPESTATUS[0]}; echo "gpu suite: exit $r"; [ $r -ne 0 ] && rc=$r ;;
    bench)
      timeout "${BENCH_TIMEOUT:-1800}" python3 scripts/benchmark.py run --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench-quick)
      timeout "${BENCH_TIMEOUT:-600}" python3 scripts/benchmark.py run --out "$OUT" --layers 2 --quick --warmup 2 --measure 3 --deadline 400 --cap-scale 0.5 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench-lean)
      timeout "${BENCH_TIMEOUT:-540}" python3 scripts/benchmark.py run --out "$OUT" --plan lean --measure 8 --deadline 520 ${BENCH_ARGS:-} 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench-profile)
      BENCH_PROFILE_DIR="$OUT" timeout "${BENCH_TIMEOUT:-540}" python3 scripts/benchmark.py run --out "$OUT" --plan profile --measure 6 --deadline 520 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench-final)
      left=$(( ${CALL_BUDGET:-1800} - SECONDS - 20 ))
      if [ "$left" -lt 100 ]; then echo "bench-final: skipped, ${left} s left"; continue; fi
      timeout "$left" python3 scripts/benchmark.py run --out "$OUT" --plan final --deadline "$left" 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    accelerate)
      n=$(python3 -c 'import torch; print(max(1, torch.cuda.device_count()))')
      UNSLOTHIFY_TEST_NUM_PROCESSES=$n python3 -m pytest tests/gpu/test_pipeline.py -v -k accelerate -p no:cacheprovider 2>&1 | tee -a "$OUT/gpu_suite.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    *) echo "unknown step $step"; rc=2 ;;
  esac
done
exit $rc
