"""ONNX Runtime session factory and execution-provider choice.

`onnxruntime-gpu` without usable CUDA libraries lists CUDAExecutionProvider as available and then silently
creates a CPU session, so the provider is decided twice: before creation from the available list
(`providers_to_request`), and after creation from what the session really uses (`check_session_provider`).
Both are pure functions so the logic is testable without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime

from models.errors import ProviderError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cuda", "cpu")
GRAPH_OPTIMIZATION_LEVELS = {
    "disable": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
DEFAULT_MAX_LOGITS_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class RuntimeOptions:
    """How encoder sessions run.

    device: auto (CUDA when a session really runs on it, else CPU) | cuda (error without CUDA) | cpu.
    intra_op_threads: threads inside one operator; 0 lets ONNX Runtime use one per physical core.
    inter_op_threads: threads across independent operators (1: BERT graphs are sequential).
    graph_optimization: disable | basic | extended | all.
    use_int8: load the dynamic-int8 variant (*.int8.onnx) written by `export --int8`.
    use_fp16: load the fp16 variant (*.fp16.onnx, models/fp16.py) meant for CUDA.
    max_logits_bytes: memory bound for one encoder call; the [batch, seq, vocab] float32 logits dominate
        memory, so batches are split to keep batch*seq*vocab*4 bytes under it.
    allow_spinning: intra-op threads busy-wait between operators. Off by default: it may shave a little
        latency on an idle machine, but on shared cores (several encoder calls at once, busy neighbours) it
        doubled single-query latency here with 2 threads.
    """

    device: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    use_int8: bool = False
    use_fp16: bool = False
    max_logits_bytes: int = DEFAULT_MAX_LOGITS_BYTES
    allow_spinning: bool = False

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")
        if self.inter_op_threads < 0:
            raise ValueError(f"inter_op_threads must be >= 0, got {self.inter_op_threads}")
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise ValueError(
                f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATION_LEVELS)}, "
                f"got {self.graph_optimization!r}"
            )
        if self.use_int8 and self.use_fp16:
            raise ValueError("use_int8 and use_fp16 are exclusive: choose one graph variant")
        if self.max_logits_bytes <= 0:
            raise ValueError(f"max_logits_bytes must be > 0, got {self.max_logits_bytes}")


def providers_to_request(device: str, available: list[str]) -> list[str]:
    """The provider list to hand to InferenceSession for `device`, given get_available_providers()."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise ProviderError(
            f"device=cuda requested but {CUDA} is not available in this onnxruntime build "
            f"(available: {', '.join(available) or 'none'}); install onnxruntime-gpu with CUDA libraries "
            "or use device=cpu/auto"
        )
    return [CPU]


def check_session_provider(device: str, session_providers: list[str]) -> str:
    """The provider a created session really runs on; device=cuda on a CPU-only session is an error."""
    if not session_providers:
        raise ProviderError("the ONNX Runtime session reports no execution provider")
    actual = session_providers[0]
    if device == "cuda" and actual != CUDA:
        raise ProviderError(
            f"device=cuda requested but the session runs on {actual}: the CUDA libraries could not be loaded "
            "(onnxruntime-gpu falls back to CPU silently; see its log above) - fix the CUDA install or use "
            "device=cpu/auto"
        )
    return actual


def session_options(options: RuntimeOptions) -> onnxruntime.SessionOptions:
    settings = onnxruntime.SessionOptions()
    settings.intra_op_num_threads = options.intra_op_threads
    settings.inter_op_num_threads = options.inter_op_threads
    settings.graph_optimization_level = GRAPH_OPTIMIZATION_LEVELS[options.graph_optimization]
    settings.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    settings.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
    settings.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    return settings


def create_session(
    onnx_path: Path | str, options: RuntimeOptions = RuntimeOptions()
) -> tuple[onnxruntime.InferenceSession, str]:
    """Create an InferenceSession and return it with the provider it really runs on."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist")
    requested = providers_to_request(options.device, onnxruntime.get_available_providers())
    session = onnxruntime.InferenceSession(
        str(onnx_path), sess_options=session_options(options), providers=requested
    )
    provider = check_session_provider(options.device, session.get_providers())
    return session, provider
