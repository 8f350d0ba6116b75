"""motion-meta: keep many customers' Meta Graph API data fresh without getting the app throttled."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("motion-meta")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
