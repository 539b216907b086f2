"""Helpers shared by the test folders: conv cases, devices, repository paths (tests/ is on pytest's pythonpath)."""
