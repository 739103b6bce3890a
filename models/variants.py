"""Which variant of an encoder graph is served (fp32, dynamic int8, fp16) and the parity figures the model
manifest records for it, so `/info` can say what the served graph costs in quality.

fp32 figures are against the PyTorch reference (manifest `parity`); int8 figures are int8 against the fp32
graph (manifest `quantization`, written by `export --int8`); fp16 figures are fp16 against fp32 (manifest
`fp16`, written by `models.fp16.add_fp16_variants`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def fp16_name(onnx_name: str) -> str:
    """query.onnx -> query.fp16.onnx"""
    return onnx_name.removesuffix(".onnx") + ".fp16.onnx"


def variant_of(onnx_name: str) -> str:
    if onnx_name.endswith(".int8.onnx"):
        return "int8"
    if onnx_name.endswith(".fp16.onnx"):
        return "fp16"
    return "fp32"


def served_graph(manifest: dict[str, Any], onnx_path: Path | None, side: str = "query") -> dict[str, Any]:
    """{"file", "variant", "parity": {...} | None, "parity_against"} for the graph a session loaded."""
    if onnx_path is None:  # inference-free: a weight table, no graph
        return {"file": None, "variant": "lookup", "parity": None, "parity_against": None}
    name = Path(onnx_path).name
    variant = variant_of(name)
    if variant == "int8":
        parity, against = (manifest.get("quantization") or {}).get(name), "fp32 graph"
    elif variant == "fp16":
        parity, against = (manifest.get("fp16") or {}).get(name), "fp32 graph"
    else:
        parity, against = (manifest.get("parity") or {}).get(side), "PyTorch reference"
    return {"file": name, "variant": variant, "parity": parity, "parity_against": against}
