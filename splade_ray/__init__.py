"""splade-serve on Ray: the same HTTP contract served by a Ray Serve application (a batched query-encoder
deployment, one scorer deployment per document-range shard, an ingress that fans out and merges), and a Ray Data
build. An optional extra (`pip install .[ray]`): nothing outside this package imports Ray (tested).

Modules without Ray (usable and tested on their own): `encoding` (the encoder half of engine.Searcher),
`shard_search` (one shard's scorer), `merge` (the global top-k). With Ray: `deployments`, `ingress`, `app`,
`data_build`; `python -m splade_ray` is the command (docs/ray.md).
"""
