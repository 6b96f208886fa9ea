#!/usr/bin/env bash
# One command for a session lent a GPU machine (the `device` tool's `run`, repo root, $OUT):
#   bash benchmarks/run_on_device.sh
# Installs the package offline, runs the GPU tests (parity of every backend against the
# PyTorch fp32 CPU reference for UEM, DOoD and UNO, SAM runners, CUDA graphs, GPU
# preprocessing) and the full benchmark (UEM tiled against the official protocol, UEM single
# window with one and three 1080p cameras through the pipeline core, UNO Swin-L, S2M with SAM
# ViT-B and MobileSAM, DOoD), the TensorRT tests when `import tensorrt` works, and leaves
# under $OUT: env.txt, pytest_gpu.log, pytest_tensorrt.log, parity.jsonl,
# benchmark.json, benchmark.md, benchmark.log, profile_uem-tiled.txt (copy the JSON and
# markdown to benchmarks/results/). Each step has its own time limit so one hang cannot eat
# the 10-minute call. Rehearsal on a CPU (GPU tests skip, tiny models):
#   DEVICE=cpu BENCHMARK_ARGS=--tiny bash benchmarks/run_on_device.sh
set -u -o pipefail
OUT=${OUT:-out/device}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BENCHMARK_ARGS=${BENCHMARK_ARGS:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    "$PYTHON" -c 'import sys, torch, onnxruntime; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version()); print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())'
    # Offline: every dependency the GPU path needs is in the machine's image (torch, numpy,
    # opencv-python-headless, onnx, onnxruntime, onnxscript, pytest); --no-deps skips rosbags.
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -2
    "$PYTHON" -c 'import ood_perception.profiling.speed, ood_perception.backends.torch; print("ood_perception imports")'
} >"$OUT/env.txt" 2>&1
status=0

OOD_PARITY_REPORT="$OUT/parity.jsonl" timeout 270 "$PYTHON" -m pytest -p no:cacheprovider \
    -q -rs -m gpu --timeout 250 test/core/test_parity.py test/backends/test_backend_torch.py \
    test/backends/test_sam_runners.py test/core/test_pipeline.py \
    test/core/test_gpu_preprocess.py test/profiling/test_speed.py \
    2>&1 | tee "$OUT/pytest_gpu.log" || status=1

# TensorRT where its Python package is there (carried as a wheel): engine builds and parity
# against ONNX Runtime, the runner's bindings and the engine cache, SAM's engines.
if "$PYTHON" -c 'import tensorrt' >/dev/null 2>&1; then
    timeout 270 "$PYTHON" -m pytest -p no:cacheprovider -q -rs --timeout 250 \
        test/backends/test_backend_tensorrt.py test/backends/test_tensorrt_engine.py \
        test/backends/test_tensorrt_cache.py test/backends/test_sam_runners.py \
        2>&1 | tee "$OUT/pytest_tensorrt.log" || status=1
else
    echo "tensorrt is not importable: TensorRT tests not run" | tee "$OUT/pytest_tensorrt.log"
fi

PRECISION=$([ "$DEVICE" = cpu ] && echo fp32 || echo fp16)
# shellcheck disable=SC2086
timeout 270 "$PYTHON" benchmarks/gpu_benchmark.py --device "$DEVICE" --precision "$PRECISION" \
    $BENCHMARK_ARGS \
    --json "$OUT/benchmark.json" --markdown "$OUT/benchmark.md" \
    --profile uem-tiled --profile-output "$OUT/profile_uem-tiled.txt" \
    2>&1 | tee "$OUT/benchmark.log" || status=1

exit $status
