"""Bad decoder-checkpoint input is a clear error naming the problem; nothing is written when export fails."""
from __future__ import annotations

import subprocess
import sys

import pytest

from models.decoder import DecoderOptions
from models.errors import CheckpointError
from models.export import export_artifact
from tests.models.builders import tiny_mistral
from tests.models.conftest import config_variant

SMALL = 2_000  # the errors do not depend on the vocabulary size; a small one keeps these tests fast


@pytest.fixture(scope="module")
def small_mistral(tmp_path_factory):
    return tiny_mistral(tmp_path_factory.mktemp("small_mistral") / "checkpoint", seed=21, vocab_size=SMALL,
                        max_positions=64)


def test_decoder_checkpoint_without_lm_head(tmp_path):
    checkpoint = tiny_mistral(tmp_path / "base_model", seed=22, vocab_size=SMALL, with_head=False)
    with pytest.raises(CheckpointError, match=r"no trained LM head: 1 weights are missing \(e.g. lm_head.weight\)"):
        export_artifact("siamese", tmp_path / "out", model=str(checkpoint), backbone="causal-lm")
    assert not (tmp_path / "out").exists()


def test_echo_on_a_model_that_cannot_take_twice_the_length(tmp_path, small_mistral):
    with pytest.raises(CheckpointError, match="echo repeats the text: document max length 48 needs 96 positions "
                                              r"but .* has a position limit of 64 tokens \(use a document max "
                                              "length <= 32 or no echo\\)"):
        export_artifact("siamese", tmp_path / "out", model=str(small_mistral), query_max_length=16,
                        doc_max_length=48, decoder_options=DecoderOptions(echo=True))
    assert not (tmp_path / "out").exists()


def test_tokenizer_without_pad_token_or_padding_side(tmp_path):
    checkpoint = tiny_mistral(tmp_path / "no_side", seed=23, vocab_size=SMALL, padding_side=None)
    with pytest.raises(CheckpointError, match="the tokenizer has no pad token and states no padding side .*"
                                              "pass --padding-side left or right"):
        export_artifact("siamese", tmp_path / "out", model=str(checkpoint), query_max_length=16, doc_max_length=32)
    # Saying the side is enough: any id pads, the attention mask hides it.
    manifest = export_artifact("siamese", tmp_path / "out", model=str(checkpoint), query_max_length=16,
                               doc_max_length=32, decoder_options=DecoderOptions(padding_side="left"))
    assert manifest["source"]["document"]["encoder"]["padding_side"] == "left"


def test_sliding_window_shorter_than_the_input(tmp_path, small_mistral):
    checkpoint = config_variant(small_mistral, tmp_path / "windowed", sliding_window=24)
    with pytest.raises(CheckpointError, match="document max length 32 exceeds .* sliding attention window of 24"):
        export_artifact("siamese", tmp_path / "out", model=str(checkpoint), query_max_length=16, doc_max_length=32)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_logit_scale_must_be_positive(tmp_path, small_mistral, scale):
    with pytest.raises(CheckpointError, match="logit scale must be a finite number > 0"):
        export_artifact("siamese", tmp_path / "out", model=str(small_mistral), query_max_length=16,
                        doc_max_length=32, decoder_options=DecoderOptions(logit_scale=scale))


def test_decoder_options_on_a_masked_lm(tmp_path, small_doc_checkpoint):
    with pytest.raises(CheckpointError, match="is a masked-LM: echo, attention, padding side and logit scale are "
                                              "decoder options"):
        export_artifact("siamese", tmp_path / "out", model=str(small_doc_checkpoint), query_max_length=16,
                        doc_max_length=32, decoder_options=DecoderOptions(echo=True))


def test_cli_reports_decoder_errors_in_one_line(tmp_path, small_mistral):
    proc = subprocess.run(
        [sys.executable, "-m", "models", "export", "--kind", "siamese", "--model", str(small_mistral), "--echo",
         "--doc-max-length", "40", "--query-max-length", "16", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert "error: echo repeats the text: document max length 40 needs 80 positions" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
