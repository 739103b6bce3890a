"""The GPU side of the encoder: IO binding so only the top-k (term, weight) pairs leave the device, and the
batch shapes to warm up so the first requests do not pay CUDA's per-shape set-up.

UNVERIFIED on a GPU in the session that wrote it (no CUDA machine): the logic runs, and is tested, on the CPU
provider, where IO binding is the same API with device "cpu"; `bench/gpu_checks.py` is the script that checks
it on a CUDA machine (parity against the CPU graph, fp16 parity, speed).

Why IO binding: the exported graph already pools and takes the top-k inside (models/splade_graph.py), so the
[batch, tokens, vocabulary] logits never leave the session; binding makes the inputs device tensors up front
and binds the two small outputs to host memory, so one run is one upload of token ids and one download of
top-k pairs, with no extra staging copies. `top_k` stays a host input: TopK reads K on the host.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnxruntime

from models.providers import CUDA

OUTPUTS = ("term_ids", "weights")
HOST_INPUTS = ("top_k",)
SEQ_BUCKETS = (8, 16, 32, 64, 128, 256, 512)


def uses_io_binding(provider: str) -> bool:
    """IO binding pays off where inputs and outputs cross a device boundary: CUDA. On CPU plain run() is as
    fast and simpler."""
    return provider == CUDA


def device_of(provider: str) -> str:
    return "cuda" if provider == CUDA else "cpu"


def run_bound(session: onnxruntime.InferenceSession, feeds: Mapping[str, np.ndarray], device: str,
              device_id: int = 0) -> list[np.ndarray]:
    """One run through IO binding: model inputs on `device`, `top_k` on the host, outputs bound to the host."""
    binding = session.io_binding()
    for name, array in feeds.items():
        if device == "cpu" or name in HOST_INPUTS:
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        else:
            value = onnxruntime.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, device_id)
            binding.bind_ortvalue_input(name, value)
    for name in OUTPUTS:
        binding.bind_output(name, "cpu")
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()


def run_top_k(session: onnxruntime.InferenceSession, feeds: Mapping[str, np.ndarray], provider: str
              ) -> list[np.ndarray]:
    """The encoder graph's (term_ids, weights), by IO binding on CUDA, by plain run() elsewhere."""
    if uses_io_binding(provider):
        return run_bound(session, feeds, device_of(provider))
    return session.run(list(OUTPUTS), dict(feeds))


def warm_up_shapes(budget_tokens: int, max_length: int, max_batch: int) -> list[tuple[int, int]]:
    """(rows, tokens) shapes the batcher can produce, coarsely: token buckets up to `max_length`, row counts in
    powers of two whose padded tokens fit the budget (and the batch-size cap)."""
    shapes = []
    for tokens in [t for t in SEQ_BUCKETS if t < max_length] + [max_length]:
        rows = 1
        while rows <= max_batch and (rows == 1 or rows * tokens <= budget_tokens):
            shapes.append((rows, tokens))
            rows *= 2
    return shapes


def warm_up(session: onnxruntime.InferenceSession, provider: str, shapes: list[tuple[int, int]],
            top_k: int = 64) -> int:
    """Run each shape once (token id 100 everywhere: the values do not matter, the shapes do)."""
    for rows, tokens in shapes:
        feeds = {"input_ids": np.full((rows, tokens), 100, dtype=np.int64),
                 "attention_mask": np.ones((rows, tokens), dtype=np.int64),
                 "top_k": np.array(top_k, dtype=np.int64)}
        run_top_k(session, feeds, provider)
    return len(shapes)
