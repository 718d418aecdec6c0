"""Alert rules, PrometheusRule and Grafana dashboards for cph-exporter, from one small config.

    python -m cph_exporter.mixin --config my.yml --out DIR

writes the files below DIR (paths as in the repository); without --config, the defaults,
which are the files committed in the repository. See docs/mixin.md.

This package only generates YAML and JSON: it imports nothing else of cph_exporter.
"""

from cph_exporter.mixin.generate import outputs
from cph_exporter.mixin.settings import ConfigError, MixinConfig, load_config, parse_config

__all__ = ["ConfigError", "MixinConfig", "load_config", "outputs", "parse_config"]
