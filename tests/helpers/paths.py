"""Paths of the repository the tests run in."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # tests/helpers/paths.py -> repository root
TUTORIALS = ROOT / "tutorials"
