#!/usr/bin/env python3
"""Regenerate the Kubernetes objects (and the rules and dashboards) from the mixin.

    python deploy/kubernetes/generate.py          # rewrite the generated files
    python deploy/kubernetes/generate.py --check  # exit 1 if they are out of date

The PrometheusRule and the dashboards ConfigMap are written by `python -m cph_exporter.mixin`
together with prometheus/alerts.yml and grafana/dashboards/*.json, from one source; this
script runs it with the default config on the repository. tests/test_mixin.py fails when the
committed files differ from what it writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from cph_exporter.mixin.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--out", str(REPO), *sys.argv[1:]]))
