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

import warnings

import onnx
import torch
from onnx import TensorProto, helper

DENSE_OUTPUT = "dense_weights"


class MaxPooledProjection(torch.nn.Module):
    """Stands in for the masked-LM's output layer: [batch, seq, hidden] -> max-pooled scores [batch, 1, vocab]."""

    def __init__(self, output_layer: torch.nn.Linear) -> None:
        super().__init__()
        self.output_layer = output_layer
        self.mask: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        first_real = mask.to(torch.float32).argmax(dim=1)  # the first real token, wherever padding is
        anchor = hidden.gather(1, first_real[:, None, None].expand(-1, 1, hidden.shape[-1]))
        hidden = torch.where(mask[:, :, None].to(torch.bool), hidden, anchor)
        scores = torch.matmul(hidden, self.output_layer.weight.t()).amax(dim=1, keepdim=True)
        if self.output_layer.bias is not None:
            scores = scores + self.output_layer.bias
        return scores


def _module_path(root: torch.nn.Module, target: torch.nn.Module) -> tuple[torch.nn.Module, str]:
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
        self._parent, self._attribute = _module_path(masked_lm, self.output_layer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # The output layer is swapped only for this call: the wrapped model stays intact for reference runs.
        pooled_projection = MaxPooledProjection(self.output_layer)
        pooled_projection.mask = attention_mask
        setattr(self._parent, self._attribute, pooled_projection)
        try:
            scores = self.masked_lm(input_ids=input_ids, attention_mask=attention_mask).logits
        finally:
            setattr(self._parent, self._attribute, self.output_layer)
        return torch.log1p(torch.relu(scores.squeeze(1)))


def append_top_k(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the dense output with TopK(k = graph input `top_k`): outputs term_ids, weights (descending)."""
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
                "TopK", [DENSE_OUTPUT, "top_k_1d"], ["weights", "term_ids"], axis=-1, largest=1, sorted=1
            ),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info("term_ids", TensorProto.INT64, ["batch", "top_k"]),
            helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["batch", "top_k"]),
        ]
    )
    return model


def export_encoder_onnx(masked_lm: torch.nn.Module, path, opset: int = 17) -> None:
    """Trace the SPLADE head around `masked_lm` and write the graph-contract ONNX file to `path`."""
    pooling = SpladePooling(masked_lm).eval()
    # A padded dummy batch, so the traced graph keeps the attention-mask path (an all-ones mask may be skipped).
    input_ids = torch.full((2, 8), 5, dtype=torch.long)
    attention_mask = torch.ones((2, 8), dtype=torch.long)
    attention_mask[1, 5:] = 0
    # The tracer warns about shape-dependent Python branches in transformers' mask code and deprecated exporter
    # internals; the export is checked by the parity measurement instead, so the warnings are noise here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooling,
            (input_ids, attention_mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=[DENSE_OUTPUT],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          DENSE_OUTPUT: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = append_top_k(onnx.load(str(path)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
