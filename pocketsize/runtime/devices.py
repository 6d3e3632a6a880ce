"""Where eval runs the variants: the CPU (the default, as most users deploy) or a CUDA GPU.

One decision for the whole evaluation, made before any model is loaded, so that a request
that cannot be met fails at once and a fallback is stated once: "auto" takes the GPU where
PyTorch sees one and the CPU elsewhere; "cuda" refuses a machine without one. ONNX variants
follow onto the GPU only through onnxruntime-gpu's CUDA provider, which exists only when that
package replaced the CPU `onnxruntime` (both install the same module); without it they run on
the CPU and the placement says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketsize.errors import PocketsizeError

DEVICES = ("cpu", "cuda", "auto")
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
ORT_GPU_SWAP = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"


@dataclass(frozen=True)
class Placement:
    """torch_device: where PyTorch variants run; ort_providers: what ONNX sessions ask for,
    in order of preference; notes: every fallback from what was asked for."""

    requested: str
    torch_device: str = "cpu"
    ort_providers: tuple[str, ...] = (CPU_PROVIDER,)
    notes: tuple[str, ...] = ()

    @property
    def on_gpu(self) -> bool:
        return self.torch_device != "cpu"

    def record(self, more_notes=()) -> dict:
        """For metrics.json; more_notes: what the sessions found (a provider that fell back)."""
        return {
            "requested": self.requested,
            "torch_device": self.torch_device,
            "ort_providers": list(self.ort_providers),
            "notes": [*self.notes, *more_notes],
        }


CPU = Placement("cpu")


def resolve_device(device: str = "cpu") -> Placement:
    if device not in DEVICES:
        raise PocketsizeError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cpu":
        return CPU
    import torch

    if not torch.cuda.is_available():
        if device == "cuda":
            raise PocketsizeError(
                "device='cuda' but PyTorch sees no CUDA GPU (torch.cuda.is_available() is "
                f"False, torch {torch.__version__}); use device='auto' or 'cpu' (--device), or "
                "install a CUDA build of torch"
            )
        return Placement(device, notes=("no CUDA GPU is visible: every variant ran on the CPU",))
    import onnxruntime as ort

    if CUDA_PROVIDER in ort.get_available_providers():
        # onnxruntime puts each node its CUDA provider has no kernel for on the CPU, without
        # saying so; dynamic int8's quantize and integer-product nodes are among them
        note = (
            "ONNX variants ran on onnxruntime's CUDA provider, which leaves the nodes it has no "
            "CUDA kernel for (dynamic int8's DynamicQuantizeLinear and MatMulInteger among "
            "them) to the CPU: such a variant's GPU latency includes the copies in between"
        )
        return Placement(device, "cuda", (CUDA_PROVIDER, CPU_PROVIDER), (note,))
    return Placement(
        device,
        "cuda",
        notes=(
            "this onnxruntime has no CUDA provider, so any ONNX variant ran on the CPU; for "
            f"ONNX on the GPU: {ORT_GPU_SWAP} (a later reinstall of pocketsize brings the CPU "
            "package back)",
        ),
    )


def gpu_info() -> dict | None:
    """The GPU PyTorch runs on, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "name": props.name,
        "memory_bytes": int(props.total_memory),
        "capability": f"{props.major}.{props.minor}",
        "count": torch.cuda.device_count(),
        "torch_cuda": torch.version.cuda,
        "bf16": bool(torch.cuda.is_bf16_supported(including_emulation=False)),
    }


def provider_note(requested: tuple[str, ...], session_providers: list[str], name: str) -> str:
    """Why an ONNX session runs on fewer providers than asked (onnxruntime falls back
    silently when, e.g., the CUDA libraries it needs are missing), or '' when it does not."""
    if requested[0] == session_providers[0]:
        return ""
    return (
        f"variant {name!r}: onnxruntime could not start {requested[0]} and ran it on "
        f"{session_providers[0]} (are the CUDA and cuDNN libraries onnxruntime-gpu needs installed?)"
    )
