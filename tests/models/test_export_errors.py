"""Bad export input is a clear error that names the problem; nothing is written when export fails."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from models.errors import CheckpointError
from models.export import export_artifact
from tests.models.builders import synthetic_vocab, tiny_bert_mlm
from tests.models.conftest import SMALL_VOCAB


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory .*no-such-dir does not exist"):
        export_artifact("siamese", tmp_path / "out", model=str(tmp_path / "no-such-dir"))
    assert not (tmp_path / "out").exists()


def test_checkpoint_that_is_a_file(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file, expected a directory"):
        export_artifact("siamese", tmp_path / "out", model=str(tmp_path / "model.bin"))


def test_checkpoint_without_masked_lm_head(tmp_path):
    checkpoint = tiny_bert_mlm(tmp_path / "encoder_only", 500, seed=5, with_head=False)
    with pytest.raises(CheckpointError, match="no trained masked-LM head"):
        export_artifact("siamese", tmp_path / "out", model=str(checkpoint))
    assert not (tmp_path / "out").exists()


def test_tokenizer_vocabulary_differs_from_model(tmp_path):
    checkpoint = tiny_bert_mlm(tmp_path / "mismatch", 500, seed=6, tokenizer_vocab_size=520)
    with pytest.raises(CheckpointError, match="tokenizer has 520 tokens but the model's vocab_size is 500"):
        export_artifact("siamese", tmp_path / "out", model=str(checkpoint))


def test_weight_table_with_unknown_tokens(tmp_path, small_doc_checkpoint):
    vocab = synthetic_vocab(SMALL_VOCAB)
    idf = tmp_path / "idf.json"
    idf.write_text(json.dumps({vocab[100]: 1.5, "zzz-not-a-token": 2.0, "another-unknown": 1.0}))
    with pytest.raises(CheckpointError, match=r"2 tokens unknown to the tokenizer vocabulary.*zzz-not-a-token"):
        export_artifact("inference-free", tmp_path / "out", doc_model=str(small_doc_checkpoint),
                        query_weights=str(idf), query_max_length=24, doc_max_length=48)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must be a non-empty JSON object"),
        ("{broken", "not valid JSON"),
        (json.dumps({"what": -1.0}), "weight of 'what' must be a finite number >= 0"),
        (json.dumps({"what": "high"}), "weight of 'what' must be a finite number >= 0"),
    ],
)
def test_malformed_weight_tables(tmp_path, small_doc_checkpoint, content, message):
    idf = tmp_path / "idf.json"
    idf.write_text(content)
    with pytest.raises(CheckpointError, match=message):
        export_artifact("inference-free", tmp_path / "out", doc_model=str(small_doc_checkpoint),
                        query_weights=str(idf), query_max_length=24, doc_max_length=48)


def test_separate_encoders_with_different_tokenizers(tmp_path, small_doc_checkpoint):
    other = tiny_bert_mlm(tmp_path / "other_vocab", 2000, seed=7)
    with pytest.raises(CheckpointError, match="use different tokenizers"):
        export_artifact("separate", tmp_path / "out", query_model=str(other), doc_model=str(small_doc_checkpoint),
                        query_max_length=24, doc_max_length=48)


def test_missing_kind_arguments_and_bad_lengths(tmp_path, small_doc_checkpoint):
    with pytest.raises(CheckpointError, match="needs both --query-model and --doc-model"):
        export_artifact("separate", tmp_path / "out", doc_model=str(small_doc_checkpoint))
    with pytest.raises(CheckpointError, match="needs --doc-model and --query-weights"):
        export_artifact("inference-free", tmp_path / "out", doc_model=str(small_doc_checkpoint))
    with pytest.raises(CheckpointError, match="document max length 100 exceeds .* position limit of 64"):
        export_artifact("siamese", tmp_path / "out", model=str(small_doc_checkpoint), doc_max_length=100)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "models", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_hub_id_is_attempted_and_fails_clearly_offline(tmp_path):
    """The hub code path runs (huggingface_hub), and its failure is one clear line, not a traceback."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    proc = run_cli("export", "--kind", "siamese", "--model", "naver/splade-cocondenser-ensembledistil",
                   "--out", str(tmp_path / "out"), env=env)
    assert proc.returncode == 1
    assert "could not be fetched from the Hugging Face Hub" in proc.stderr
    assert "naver/splade-cocondenser-ensembledistil" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_usage_errors():
    proc = run_cli()
    assert proc.returncode == 2 and "usage: python -m models" in proc.stderr
    proc = run_cli("export", "--kind", "dual", "--out", "x")
    assert proc.returncode == 2 and "invalid choice: 'dual'" in proc.stderr
