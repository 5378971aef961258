"""Connectors to the directories: one module per directory, one contract in base.py."""
