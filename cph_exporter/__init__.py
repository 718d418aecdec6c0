"""Prometheus exporter for Huawei Cloud Cloud Phone Host (CPH) servers."""

import functools
import os
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("cph-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# Set by the image build (`--build-arg REVISION=$(git rev-parse HEAD)`), where no .git is.
REVISION_ENV = "CPH_EXPORTER_REVISION"


@functools.cache
def revision() -> str:
    """The git commit the exporter runs from, for cph_exporter_build_info; "" when unknown.

    From `git rev-parse HEAD` when the package sits in a git checkout (an editable install),
    else from CPH_EXPORTER_REVISION, else "". Asked once, when first needed.
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / ".git").exists():
        try:
            answer = subprocess.run(
                ["git", "-C", str(checkout), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            pass
        else:
            return answer.stdout.strip()
    return os.environ.get(REVISION_ENV, "").strip()
