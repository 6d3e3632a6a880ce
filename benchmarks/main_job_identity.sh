#!/usr/bin/env bash
# Does a change leave the main job's results alone? Runs `pocketsize run recipes/sentiment.yaml`
# with the code of two commits (same seed, same machine, one after the other, each in a git
# worktree, the same .venv), then compares the model files byte for byte and every non-timing
# figure of metrics.json. Run it with nothing else on the machine only if you also want to read
# the timings; the bytes do not depend on them.
#
#   bash benchmarks/main_job_identity.sh BEFORE_COMMIT AFTER_COMMIT [WORK_DIR]
#
# The ONNX Runtime mobile twin (int8/*.ort) is left out: onnxruntime's .ort conversion writes
# different bytes for the same graph from one call to the next.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
before=$1 after=$2 work=${3:-/tmp/pocketsize-main-job-identity}
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$work"
for label in before after; do
  commit=$before; [ $label = after ] && commit=$after
  tree="$work/tree-$label"
  git -C "$root" worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
  git -C "$root" worktree add --detach "$tree" "$commit" >/dev/null
  rm -rf "$work/run-$label"
  start=$(date +%s)
  (cd "$tree" && PYTHONPATH="$tree" "$root/.venv/bin/python" -m pocketsize run \
    recipes/sentiment.yaml --run-dir "$work/run-$label" > "$work/$label.log" 2>&1)
  echo "[$label] $commit: $(( $(date +%s) - start )) s (log: $work/$label.log)"
done
"$root/.venv/bin/python" - "$work" <<'EOF'
import hashlib, json, sys
from pathlib import Path

work = Path(sys.argv[1])
files = ["teacher/model.safetensors", "student/model.safetensors", "pruned/model.safetensors",
         "onnx/model.onnx", "int8/model_quantized.onnx", "optimum-int8/model_quantized.onnx"]
same = True
for f in files:
    a, b = (hashlib.sha256((work / f"run-{x}" / f).read_bytes()).hexdigest()[:16]
            for x in ("before", "after"))
    same &= a == b
    print(f"{f:36s} {a} {b} {'SAME' if a == b else 'DIFFERENT'}")
timing = {"latency_ms", "throughput_per_s", "memory", "speedup", "speedup_batch_size", "pareto",
          "source", "files", "size_source"}
variants = [json.loads((work / f"run-{x}" / "metrics.json").read_text())["variants"]
            for x in ("before", "after")]
for name, figures in variants[0].items():
    differ = [k for k in figures if k not in timing and figures[k] != variants[1][name].get(k)]
    same &= not differ
    metric = figures["metric"]
    print(f"{name:14s} {metric['name']} {metric['value']:.4f}, agreement "
          f"{figures['agreement']:.4f}: {'differs in ' + ', '.join(differ) if differ else 'same figures'}")
print("IDENTICAL" if same else "NOT IDENTICAL")
EOF
