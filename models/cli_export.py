"""`python -m models export --kind siamese|separate|inference-free ... --out DIR`: checkpoint -> artifact."""
from __future__ import annotations

import argparse
import sys

from models import artifact, decoder
from models.export import DEFAULT_OPSET, export_artifact


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models export",
        description=__doc__,
        epilog="Checkpoints are local directories or Hugging Face hub ids (owner/name).",
    )
    parser.add_argument("--kind", required=True, choices=artifact.KINDS)
    parser.add_argument("--model", help="siamese: one masked-LM checkpoint for queries and documents")
    parser.add_argument("--query-model", help="separate: the query encoder checkpoint")
    parser.add_argument("--doc-model", help="separate, inference-free: the document encoder checkpoint")
    parser.add_argument("--query-weights", help="inference-free: idf.json token -> weight table for queries")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit) for hub ids")
    parser.add_argument("--out", required=True, help="artifact directory to write (replaced atomically)")
    parser.add_argument("--query-max-length", type=int, default=artifact.DEFAULT_QUERY_MAX_LENGTH,
                        help="query tokens kept, special tokens included (default %(default)s)")
    parser.add_argument("--doc-max-length", type=int, default=artifact.DEFAULT_DOC_MAX_LENGTH,
                        help="document tokens kept, special tokens included (default %(default)s)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    parser.add_argument("--int8", action="store_true", help="also write dynamic-int8 variants (*.int8.onnx)")
    parser.add_argument("--backbone", choices=decoder.BACKBONES, default="auto",
                        help="masked-lm (BERT-style *ForMaskedLM) or causal-lm (decoder *ForCausalLM with its LM "
                             "head); auto: masked-lm when the model type has one, else causal-lm")
    group = parser.add_argument_group("decoder (causal-lm) options; unset ones come from the checkpoint")
    group.add_argument("--echo", action="store_true",
                       help="repeat the text and pool over the second copy only (Echo-Mistral-SPLADE, CSPLADE)")
    group.add_argument("--attention", choices=decoder.ATTENTIONS,
                       help="default: bidirectional if config.json has \"bidirectional\": true or "
                            "\"is_causal\": false, else causal")
    group.add_argument("--padding-side", choices=decoder.PADDING_SIDES,
                       help="default: tokenizer_config.json's padding_side, then config.json's, then right")
    group.add_argument("--logit-scale", type=float,
                       help="multiply the logits before log1p(relu(.)); default: config.json's logit_scale when "
                            "the model does not apply it itself, else 1")
    args = parser.parse_args(argv)
    decoder_options = decoder.DecoderOptions(echo=args.echo, attention=args.attention,
                                             padding_side=args.padding_side, logit_scale=args.logit_scale)
    manifest = export_artifact(
        args.kind, args.out, model=args.model, query_model=args.query_model, doc_model=args.doc_model,
        query_weights=args.query_weights, revision=args.revision, query_max_length=args.query_max_length,
        doc_max_length=args.doc_max_length, opset=args.opset, int8=args.int8, backbone=args.backbone,
        decoder_options=decoder_options,
    )
    parity = manifest["parity"]["document"]
    print(f"exported kind={args.kind} vocab={manifest['vocab_size']} to {args.out} (document parity max abs diff "
          f"{parity['max_abs_diff']:.2e}, top-64 sets agree {parity['top64_sets_agree']:.0%})", file=sys.stderr)
    return 0
