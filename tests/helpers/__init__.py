"""Helpers shared by the test folders: conv cases, devices, repo paths (tests/ is on pytest's pythonpath)."""
