"""Optional dynamic int8 quantization of an exported encoder (weights int8, activations quantized at run time)."""
from __future__ import annotations

import logging
from pathlib import Path


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs a warning per model about pre-processing; the parity figures say what matters.
    logging.getLogger("root").setLevel(logging.ERROR)
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
