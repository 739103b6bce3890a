"""The SPLADE head as a traceable torch module, and the TopK tail appended to the exported ONNX graph.

Pooling is reformulated for speed with identical outputs. log1p and relu are monotone and the vocabulary bias
is constant over positions, so
    max_pos log1p(relu(h_pos . W + b)) == log1p(relu(max_pos(h_pos . W) + b)):
the [batch, seq, vocab] product is only reduced, never transformed element-wise (no bias add, no relu, no log
over it). Padded positions must not win the max: rather than masking the [batch, seq, vocab] tensor, the
projection's input rows at padded positions are replaced by the row of the first real token (a
[batch, seq, hidden] select), whose scores are in the max anyway.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper

DENSE_OUTPUT = "dense_weights"
# Graphs whose weights reach this size are saved with external data (protobuf cannot serialize 2 GB).
EXTERNAL_DATA_BYTES = 1_900_000_000


class MaxPooledProjection(torch.nn.Module):
    """Stands in for the masked-LM's output layer: [batch, seq, hidden] -> max-pooled scores [batch, 1, vocab]."""

    def __init__(self, output_layer: torch.nn.Linear, mask: torch.Tensor, pooled_from=0) -> None:
        super().__init__()
        self.output_layer = output_layer
        self.mask = mask  # [batch, seq - pooled_from]: which of the pooled positions are real tokens
        self.pooled_from = pooled_from  # echo: only the second copy (positions pooled_from..) is projected

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if not isinstance(self.pooled_from, int) or self.pooled_from:
            hidden = hidden[:, self.pooled_from:]
        first_real = mask.to(torch.float32).argmax(dim=1)  # the first real token, wherever padding is
        anchor = hidden.gather(1, first_real[:, None, None].expand(-1, 1, hidden.shape[-1]))
        hidden = torch.where(mask[:, :, None].to(torch.bool), hidden, anchor)
        scores = torch.matmul(hidden, self.output_layer.weight.t()).amax(dim=1, keepdim=True)
        if self.output_layer.bias is not None:
            scores = scores + self.output_layer.bias
        return scores


def module_path(root: torch.nn.Module, target: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    for name, module in root.named_modules():
        if module is target:
            parent_name, _, attribute = name.rpartition(".")
            return root.get_submodule(parent_name), attribute
    raise ValueError("the output layer is not a submodule of the model")


class SpladePooling(torch.nn.Module):
    """input_ids, attention_mask -> dense SPLADE weights [batch, vocab] = log1p(relu(masked max of logits))."""

    def __init__(self, masked_lm: torch.nn.Module) -> None:
        super().__init__()
        self.masked_lm = masked_lm
        self.output_layer = masked_lm.get_output_embeddings()
        self._parent, self._attribute = module_path(masked_lm, self.output_layer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # The output layer is swapped only for this call: the wrapped model stays intact for reference runs.
        pooled_projection = MaxPooledProjection(self.output_layer, attention_mask)
        setattr(self._parent, self._attribute, pooled_projection)
        try:
            scores = self.masked_lm(input_ids=input_ids, attention_mask=attention_mask).logits
        finally:
            setattr(self._parent, self._attribute, self.output_layer)
        return torch.log1p(torch.relu(scores.squeeze(1)))


def append_top_k(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the dense output with TopK(k = graph input `top_k`): outputs term_ids (int32, as everywhere
    else in the project: vocabularies beyond 65,536 terms fit, and it halves the output), weights (descending)."""
    graph = model.graph
    dense = next(output for output in graph.output if output.name == DENSE_OUTPUT)
    graph.output.remove(dense)
    graph.input.append(helper.make_tensor_value_info("top_k", TensorProto.INT64, []))
    graph.node.extend(
        [
            helper.make_node(
                "Constant", [], ["top_k_shape"], value=helper.make_tensor("shape_1", TensorProto.INT64, [1], [1])
            ),
            helper.make_node("Reshape", ["top_k", "top_k_shape"], ["top_k_1d"]),  # TopK wants K as [1]
            helper.make_node(
                "TopK", [DENSE_OUTPUT, "top_k_1d"], ["weights", "term_ids_int64"], axis=-1, largest=1, sorted=1
            ),
            helper.make_node("Cast", ["term_ids_int64"], ["term_ids"], to=TensorProto.INT32),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info("term_ids", TensorProto.INT32, ["batch", "top_k"]),
            helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["batch", "top_k"]),
        ]
    )
    return model


class WithoutEmptyTexts(torch.nn.Module):
    """A text with no tokens at all (an empty string, for tokenizers that add no BOS/CLS) weighs nothing,
    as in the textbook formula; without this its padding row would be pooled. A [batch, 1] multiply."""

    def __init__(self, pooling: torch.nn.Module) -> None:
        super().__init__()
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        has_tokens = attention_mask.amax(dim=1, keepdim=True).to(torch.float32)
        return self.pooling(input_ids, attention_mask) * has_tokens


def export_encoder_onnx(pooling: torch.nn.Module, path, opset: int = 17) -> None:
    """Trace a SPLADE pooling module (`SpladePooling` around a masked-LM, `DecoderSpladePooling` around a causal
    LM) and write the graph-contract ONNX file to `path`."""
    pooling = WithoutEmptyTexts(pooling).eval()
    # A padded dummy batch, so the traced graph keeps the attention-mask path (an all-ones mask may be skipped).
    input_ids = torch.full((2, 8), 5, dtype=torch.long)
    attention_mask = torch.ones((2, 8), dtype=torch.long)
    attention_mask[1, 5:] = 0
    path = Path(path)
    # The tracer warns about shape-dependent Python branches in transformers' mask code and deprecated exporter
    # internals; the export is checked by the parity measurement instead, so the warnings are noise here.
    # Traced into a scratch directory: above 2 GB torch writes one external file per weight next to the graph.
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        warnings.simplefilter("ignore")
        traced = Path(scratch) / "traced.onnx"
        torch.onnx.export(
            pooling,
            (input_ids, attention_mask),
            str(traced),
            input_names=["input_ids", "attention_mask"],
            output_names=[DENSE_OUTPUT],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          DENSE_OUTPUT: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
        model = append_top_k(onnx.load(str(traced)))
        save_graph(model, path)


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(tensor.raw_data) for tensor in model.graph.initializer)


def save_graph(model: onnx.ModelProto, path: Path) -> None:
    """One file when it fits protobuf's 2 GB limit (SPLADE-Tiny: 33 MB); else the graph plus all its weights in
    one `<name>.data` file beside it (Qwen3-0.6B in float32: 2.4 GB), which ONNX Runtime loads from there."""
    if weight_bytes(model) < EXTERNAL_DATA_BYTES:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=external_data_name(path), size_threshold=1024)
    onnx.checker.check_model(str(path))  # by path: the checker cannot hold a model over 2 GB in memory


def external_data_name(path: Path) -> str:
    return Path(path).name + ".data"
