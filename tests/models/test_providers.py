"""Execution-provider choice: the pure decision functions with simulated provider lists (CUDA present, absent,
listed but silently not used), plus real CPU sessions on this machine."""
from __future__ import annotations

import onnxruntime
import pytest

from models.errors import ProviderError
from models.providers import (
    CPU,
    CUDA,
    RuntimeOptions,
    check_session_provider,
    create_session,
    providers_to_request,
)

GPU_BUILD = [CUDA, CPU]  # what onnxruntime-gpu lists, whether or not the CUDA libraries load
CPU_BUILD = [CPU]


@pytest.mark.parametrize(
    ("device", "available", "expected"),
    [
        ("auto", GPU_BUILD, [CUDA, CPU]),
        ("auto", CPU_BUILD, [CPU]),
        ("auto", ["TensorrtExecutionProvider", CUDA, CPU], [CUDA, CPU]),
        ("cpu", GPU_BUILD, [CPU]),
        ("cpu", CPU_BUILD, [CPU]),
        ("cuda", GPU_BUILD, [CUDA, CPU]),
    ],
)
def test_providers_requested_for_each_device(device, available, expected):
    assert providers_to_request(device, available) == expected


def test_cuda_requested_without_cuda_build_is_a_clear_error():
    with pytest.raises(ProviderError, match="device=cuda.*not available"):
        providers_to_request("cuda", CPU_BUILD)


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device must be one of"):
        providers_to_request("tpu", CPU_BUILD)


@pytest.mark.parametrize(
    ("device", "session_providers", "expected"),
    [
        ("auto", [CUDA, CPU], CUDA),  # CUDA really loaded
        ("auto", [CPU], CPU),  # onnxruntime-gpu without CUDA libraries: silent CPU session, reported as CPU
        ("cpu", [CPU], CPU),
        ("cuda", [CUDA, CPU], CUDA),
    ],
)
def test_reported_provider_is_what_the_session_runs_on(device, session_providers, expected):
    assert check_session_provider(device, session_providers) == expected


def test_cuda_requested_but_session_fell_back_to_cpu_is_an_error():
    """The silent fall-back of onnxruntime-gpu must not pass for a CUDA session."""
    with pytest.raises(ProviderError, match="runs on CPUExecutionProvider"):
        check_session_provider("cuda", [CPU])


def test_real_cpu_session_reports_its_real_provider(default_model_dir):
    session, provider = create_session(default_model_dir / "query.onnx", RuntimeOptions(device="cpu"))
    assert provider == session.get_providers()[0] == CPU


def test_auto_on_this_machine_uses_what_the_session_really_runs_on(default_model_dir):
    session, provider = create_session(default_model_dir / "query.onnx", RuntimeOptions(device="auto"))
    assert provider == session.get_providers()[0]
    if CUDA not in onnxruntime.get_available_providers():
        assert provider == CPU


def test_device_cuda_on_a_machine_without_cuda_fails_clearly(default_model_dir):
    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build lists CUDA; the CPU-only path is covered by the pure tests")
    with pytest.raises(ProviderError, match="device=cuda"):
        create_session(default_model_dir / "query.onnx", RuntimeOptions(device="cuda"))


def test_thread_counts_and_optimization_level_reach_the_session(default_model_dir):
    options = RuntimeOptions(device="cpu", intra_op_threads=1, inter_op_threads=1, graph_optimization="basic",
                             allow_spinning=True)
    session, _ = create_session(default_model_dir / "query.onnx", options)
    settings = session.get_session_options()
    assert settings.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    default_session, _ = create_session(default_model_dir / "query.onnx", RuntimeOptions(device="cpu"))
    assert default_session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert settings.intra_op_num_threads == 1
    assert settings.inter_op_num_threads == 1
    assert settings.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("device", "gpu", "device must be one of"),
        ("intra_op_threads", -1, "intra_op_threads must be >= 0"),
        ("inter_op_threads", -2, "inter_op_threads must be >= 0"),
        ("graph_optimization", "max", "graph_optimization must be one of"),
        ("max_logits_bytes", 0, "max_logits_bytes must be > 0"),
    ],
)
def test_bad_runtime_options_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        RuntimeOptions(**{field: value})


def test_missing_onnx_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        create_session(tmp_path / "nothing.onnx", RuntimeOptions(device="cpu"))
