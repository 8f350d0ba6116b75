"""`python -m motion_meta_cli` runs the CLI."""

from motion_meta_cli.cli.main import run

run()
