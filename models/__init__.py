"""Encoders: checkpoint kinds, ONNX export, ONNX Runtime sessions and provider choice, the default model.

Run-time modules (runtime, providers, tokenization, artifact) never import torch or transformers; only the
export side (export, checkpoints, splade_graph, parity) does.
"""
