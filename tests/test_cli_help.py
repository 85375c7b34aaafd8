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


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


LEAVES = list(leaf_commands(main))


@pytest.mark.parametrize("path,command", LEAVES, ids=[" ".join(path) for path, _ in LEAVES])
def test_every_option_has_help_and_every_data_option_names_every_source(path, command):
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert [p.name for p in options if not p.help] == [], path
    for option in options:
        if option.name == "data":
            assert all(word in option.help for word in ("mnist", "IDX", "image folder", ".zip", ".npz", ".npy")), path


def test_the_plot_group_names_every_figure():
    result = CliRunner().invoke(main, ["plot", "--help"])
    text = " ".join(result.output.split())
    assert "accuracy against t" in text and "rate against input" in text and "spike raster" in text
