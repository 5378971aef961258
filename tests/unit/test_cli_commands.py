"""`idlifecycle --help` lists the commands from a table, not from their modules: the two must agree."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import idlifecycle.cli
from idlifecycle.cli import COMMANDS


def test_each_area_module_registers_exactly_the_commands_the_table_gives_it():
    areas = [info.name for info in pkgutil.iter_modules(idlifecycle.cli.__path__)]
    for area in areas:
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"idlifecycle.cli.{area}").register(subparsers)
        assert set(subparsers.choices) == {name for name, command in COMMANDS.items() if command.area == area}, area
    assert {command.area for command in COMMANDS.values()} <= set(areas)
