#!/usr/bin/env bash
# The device check of the GPU backend (issue 20), as one run on a machine with a
# CUDA GPU, CuPy, torch, torchaudio, nvcc and compute-sanitizer, and no internet:
#   1. install lattice offline (the image's Cython and numpy build the CPU engine);
#      pytest and hypothesis come from ./.device-wheels when the image lacks them
#      (pip download pytest hypothesis -d .device-wheels, carried along);
#   2. pytest -m "gpu or cuda_emulation": GPU against CPU on every case, the torch
#      ops on CUDA against torch's ctc_loss, long and wide inputs, a training step;
#   3. compute-sanitizer racecheck and memcheck on a small case of every kernel;
#   4. lattice bench --device cuda: CTC forward+backward against torch's CUDA
#      ctc_loss at B=32 T=1000 C=64 S=200 and B=64 T=2000 C=1000 S=400, and batched
#      forced alignment of 64 utterances against torchaudio's forced_align.
# Reports go to $OUT (or ./gpu-check). Sized for under 8 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
status=0
step() { echo "== $*" | tee -a "$OUT/summary.txt"; }

step "install"
if [ -d .device-wheels ]; then
  python -m pip install -q --no-index --find-links .device-wheels pytest hypothesis \
    >"$OUT/install.txt" 2>&1 || true
fi
python -m pip install -q --no-build-isolation --no-deps -e . >>"$OUT/install.txt" 2>&1 \
  || { step "install FAILED"; tail -20 "$OUT/install.txt"; exit 1; }
nvidia-smi -L | tee -a "$OUT/summary.txt"
python -c "import cupy, torch; print('cupy', cupy.__version__, 'torch', torch.__version__)" \
  | tee -a "$OUT/summary.txt"

step "pytest -m 'gpu or cuda_emulation'"
tests="tests/test_gpu.py tests/test_cuda_compile.py"
# the emulation's property tests need hypothesis
python -c "import hypothesis" 2>/dev/null && tests="$tests tests/test_cuda_emulation.py"
timeout 300 python -m pytest -q -p no:cacheprovider -m "gpu or cuda_emulation" $tests \
  >"$OUT/pytest.txt" 2>&1 || status=1
tail -5 "$OUT/pytest.txt" | tee -a "$OUT/summary.txt"

for tool in racecheck memcheck; do
  step "compute-sanitizer --tool $tool"
  timeout 120 compute-sanitizer --tool "$tool" --error-exitcode 3 \
    python tools/gpu_small_case.py >"$OUT/$tool.txt" 2>&1 || status=1
  tail -3 "$OUT/$tool.txt" | tee -a "$OUT/summary.txt"
done

step "lattice bench --device cuda"
timeout 240 python -m lattice bench --device cuda --dtype both --repeat 5 \
  >"$OUT/bench.txt" 2>&1 || status=1
tee -a "$OUT/summary.txt" <"$OUT/bench.txt"
step "done (status $status)"
exit "$status"
