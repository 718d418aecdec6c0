"""python -m cph_exporter.mixin [--config FILE] [--out DIR] [--check]"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cph_exporter.mixin.generate import outputs
from cph_exporter.mixin.settings import ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cph_exporter.mixin",
        description="Write the CPH alert rules, PrometheusRule and Grafana dashboards.",
    )
    parser.add_argument("--config", type=Path, help="the mixin config (YAML); default: defaults")
    parser.add_argument(
        "--out", type=Path, default=Path("."), help="directory to write below (default: .)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ConfigError) as exc:
        print(f"cph_exporter.mixin: {args.config}: {exc}", file=sys.stderr)
        return 2
    stale = []
    for relative, text in outputs(config).items():
        path = args.out / relative
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(relative)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    for relative in stale:
        print(f"wrote {args.out / relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
