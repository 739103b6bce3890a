"""Optional dynamic int8 quantization of an exported encoder (weights int8, activations quantized at run time)."""
from __future__ import annotations

import logging
from pathlib import Path


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs a warning per model about pre-processing; the parity figures say what matters.
    logging.getLogger("root").setLevel(logging.ERROR)
    # Graphs over 2 GB keep their weights in external data (models/splade_graph.py); so does their int8 copy.
    external = (Path(fp32_path).parent / (Path(fp32_path).name + ".data")).exists()
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8,
                     use_external_data_format=external)
