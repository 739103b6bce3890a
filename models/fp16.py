"""An fp16 variant of an exported encoder graph (query.fp16.onnx, doc.fp16.onnx) for the CUDA provider, with
its own parity figures (fp16 against the fp32 graph) in the manifest under `fp16`.

UNVERIFIED here: made and measured by `bench/gpu_checks.py` on a CUDA machine (the CPU provider has few fp16
kernels, so figures measured on CPU would not describe what a GPU serves). Inputs and outputs stay int64 /
float32 (`keep_io_types`), so the encoder code is the same for every variant.
"""
from __future__ import annotations

import json
from pathlib import Path

from models import artifact
from models.variants import fp16_name


def convert_fp16(fp32_path: Path, fp16_path: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    # TopK/ReduceMax on log1p(relu(x)) are safe in fp16; keep_io_types keeps the graph's interface unchanged.
    converted = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(converted, str(fp16_path))


def add_fp16_variants(artifact_dir: Path | str, providers: list[str]) -> dict:
    """Write *.fp16.onnx next to each graph, measure each against fp32 on `providers`, record in the manifest."""
    import onnxruntime

    from models.parity import PARITY_TEXTS, batches, compare, onnx_dense_weights
    from models.tokenization import load_tokenizer
    import numpy as np

    artifact_dir = Path(artifact_dir)
    manifest = artifact.read_manifest(artifact_dir)
    figures = {}
    for name, side in ((artifact.QUERY_ONNX, "query"), (artifact.DOC_ONNX, "document")):
        if not (artifact_dir / name).exists():
            continue
        target = artifact_dir / fp16_name(name)
        convert_fp16(artifact_dir / name, target)
        tokenizer = load_tokenizer(artifact_dir / artifact.TOKENIZER, manifest["max_length"][side])
        fp32 = onnxruntime.InferenceSession(str(artifact_dir / name), providers=providers)
        fp16 = onnxruntime.InferenceSession(str(target), providers=providers)
        reference, candidate = [], []
        for batch in batches(tokenizer, PARITY_TEXTS, singles=0):
            reference.append(onnx_dense_weights(fp32, batch, manifest["vocab_size"]))
            candidate.append(onnx_dense_weights(fp16, batch, manifest["vocab_size"]))
        figures[target.name] = {**compare(np.concatenate(reference), np.concatenate(candidate)),
                                "provider": fp16.get_providers()[0], "bytes_fp16": target.stat().st_size}
    manifest["fp16"] = figures
    (artifact_dir / artifact.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return figures
