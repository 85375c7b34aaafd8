import click
import pytest
from click.testing import CliRunner

from ann2snn.cli import main


def commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(commands(main)), ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"ann2snn {' '.join(path)}" in result.output


def test_all_commands_are_there():
    assert set(main.commands) == {
        "demo",
        "convert",
        "batch",
        "simulate",
        "inspect",
        "verify",
        "plot",
        "report",
        "diagnose",
        "check",
    }
    assert set(main.commands["plot"].commands) == {"accuracy", "if-rate", "raster"}
