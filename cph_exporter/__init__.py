"""Prometheus exporter for Huawei Cloud Cloud Phone Host (CPH) servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cph-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
