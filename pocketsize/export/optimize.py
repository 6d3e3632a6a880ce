"""CPU graph optimisation: ONNX Runtime's transformer fusions, only where they are known to be safe."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from pocketsize.errors import PocketsizeError

log = logging.getLogger(__name__)


def ort_model_type(model_type: str | None) -> str | None:
    """ONNX Runtime's optimizer family for a transformers model type, or None if unknown."""
    if not model_type:
        return None
    from optimum.onnxruntime.utils import ORTConfigManager

    return ORTConfigManager._conf.get(model_type.replace("_", "-")) or ORTConfigManager._conf.get(
        model_type
    )


def optimize(
    model: str | Path, model_type: str | None = None, out: str | Path | None = None
) -> dict:
    """Fuse attention / LayerNorm / GELU subgraphs of an ONNX file in place (or into `out`).

    Returns a note: {"applied": bool, "reason"|"fused": ...}. Unknown model types are skipped
    rather than guessed: a wrong fusion silently changes outputs (the export's parity check runs
    on the optimised graph anyway).
    """
    from pocketsize.formats.onnx_dir import model_file
    from pocketsize.formats.records import read_record

    path = model_file(model, allow_ort=False)
    if model_type is None and Path(model).is_dir():
        model_type = _config_model_type(Path(model)) or read_record(model).get("model_type")
    family = ort_model_type(model_type)
    if family is None:
        reason = (
            f"model type {model_type!r} has no ONNX Runtime fusion recipe; graph left as exported"
        )
        log.info("optimize: %s", reason)
        return {"applied": False, "reason": reason}
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # num_heads=0 / hidden_size=0: read them from the graph, so pruned models whose layers keep
    # different numbers of heads are fused correctly. opt_level=1 keeps only portable
    # optimisations in the saved file (level 2+ writes ops such as FusedMatMul that the int8
    # quantizer cannot handle); the session applies the rest at load time.
    try:
        optimized = optimize_model(
            str(path),
            model_type=family,
            num_heads=0,
            hidden_size=0,
            opt_level=1,
            optimization_options=FusionOptions(family),
        )
    except Exception as e:
        raise PocketsizeError(
            f"graph optimisation failed for {path.name} ({type(e).__name__}: {e}); "
            "export again with optimize=False (--no-optimize)"
        ) from None
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    target = Path(out) if out is not None else path
    # Write next to the target then rename, so a failure never leaves a half-written model.
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        optimized.save_model_to_file(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"applied": True, "family": family, "model_type": model_type, "fused": fused}


def _config_model_type(model_dir: Path) -> str | None:
    import json

    config = model_dir / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None
