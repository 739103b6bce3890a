"""`python -m splade_ray serve --index DIR --shards N [...]`: serve an index as a Ray Serve application with the
single-process service's HTTP contract (docs/ray.md). `python -m splade_ray build ...`: a Ray Data build
(splade_ray/data_build.py; `build --help`).

`--index` is either a sharded index (a directory with shards.json, from `python -m index_builder shard`) or a
plain index, which is first split into `--shards` range shards beside it (`<index>.shards-<N>`, reused while the
source index is unchanged). Every SPLADE_* setting of the single-process service is also a flag here
(`--request-timeout-s`, `--max-k`, `--port`, ...). `--address` joins a running cluster (`ray start --head`);
without it a local cluster is started in this process and stopped on exit (Ctrl-C or SIGTERM).

Exit status: 0 after a normal shutdown, 2 for invalid settings or arguments (named), 1 when the application
cannot start.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from engine.errors import EngineError
from service.options import build_parser
from service.settings import Settings, SettingsError, load_settings


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    ray = parser.add_argument_group("Ray")
    ray.add_argument("--index", type=Path, help="sharded index (shards.json) or plain index (default: SPLADE_INDEX_DIR)")
    ray.add_argument("--shards", type=int, default=None, help="split a plain --index into this many range shards")
    ray.add_argument("--shards-dir", type=Path, default=None,
                     help="where the split goes (default: <index>.shards-<N> beside the index)")
    ray.add_argument("--address", default=None,
                     help="Ray cluster to join (e.g. 'auto' or HOST:6379 after `ray start --head`); default: start "
                          "a local cluster")
    ray.add_argument("--num-cpus", type=float, default=None, help="CPUs of the local cluster (default: all)")
    ray.add_argument("--encoder-replicas", type=int, default=1)
    ray.add_argument("--shard-replicas", type=int, default=1, help="replicas of every shard deployment")
    ray.add_argument("--encoder-cpus", type=float, default=0.5, help="CPUs Ray reserves per encoder replica")
    ray.add_argument("--shard-cpus", type=float, default=0.25, help="CPUs Ray reserves per shard replica")
    ray.add_argument("--encoder-gpus", type=float, default=0.0,
                     help="GPUs per encoder replica (> 0 puts replicas on GPUs; set --device cuda or auto)")


def resolve_shards(index: Path, shards: int | None, shards_dir: Path | None) -> Path:
    """The sharded index to serve: `index` itself when it is one, else its split (made when missing or stale)."""
    import storage
    from index_builder.shard import SHARDS_FILE, read_shards, split_index

    if (index / SHARDS_FILE).is_file():
        if shards is not None and read_shards(index)["count"] != shards:
            raise ValueError(f"--shards {shards}: {index} already holds {read_shards(index)['count']} shards")
        return index
    if shards is None:
        raise ValueError(f"--shards is required: {index} is a plain index (no {SHARDS_FILE}) and must be split")
    target = shards_dir or index.with_name(f"{index.name}.shards-{shards}")
    if (target / SHARDS_FILE).is_file():
        layout = read_shards(target)
        if (layout["count"] == shards and layout["source"].get("manifest_sha256")
                == storage.file_sha256(index / "manifest.json")):
            return target
    split_index(index, target, shards)
    return target


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "build":
        return build(argv[1:])
    usage = "usage: python -m splade_ray {serve,build} ...  (VERB --help for the flags)"
    if argv and argv[0] in ("-h", "--help"):
        print(f"{usage}\n\n{__doc__}")
        return 0
    if not argv or argv[0] != "serve":
        print(usage, file=sys.stderr)
        return 2
    parser = build_parser(prog="python -m splade_ray serve")
    parser.description = __doc__.split("\n\n")[0]
    add_ray_arguments(parser)
    args = parser.parse_args(argv[1:])
    overrides = {name: getattr(args, name) for name in Settings.model_fields if getattr(args, name) is not None}
    if args.index is not None:
        overrides["index_dir"] = str(args.index)
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"splade_ray: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        shards_dir = resolve_shards(Path(settings.index_dir), args.shards, args.shards_dir)
    except (ValueError, EngineError, OSError) as exc:
        print(f"splade_ray: error: {exc}", file=sys.stderr)
        return 2

    import ray
    from ray import serve

    from splade_ray.deployments import RayOptions, build_application

    options = RayOptions(encoder_replicas=args.encoder_replicas, shard_replicas=args.shard_replicas,
                         encoder_cpus=args.encoder_cpus, shard_cpus=args.shard_cpus, encoder_gpus=args.encoder_gpus)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    ray.init(address=args.address, num_cpus=None if args.address else args.num_cpus,
             include_dashboard=False, log_to_driver=settings.log_level == "debug")
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_application(settings, shards_dir, options), name="splade", route_prefix="/")
        print(json.dumps({"serving": f"http://{settings.host}:{settings.port}", "shards": str(shards_dir)}),
              flush=True)
        stop.wait()
    except Exception as exc:  # noqa: BLE001 - reported with its reason, then a non-zero exit
        print(f"splade_ray: cannot serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


def build(argv: list[str]) -> int:
    from index_builder.corpus import CorpusError
    from splade_ray import data_build

    parser = argparse.ArgumentParser(prog="python -m splade_ray build", description=data_build.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data_build.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return data_build.run(args)
    except (CorpusError, EngineError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
