"""Progress display (plain lines off a terminal, tqdm on one) and the CLI's --verbose logging."""

import io

import pytest
from click.testing import CliRunner
from tqdm import tqdm

from ann2snn.cli import main
from ann2snn.progress import PlainProgress, progress_bar
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_one_per_tenth_and_a_last_line():
    out = io.StringIO()
    with progress_bar(total=200, desc="simulate T=8", unit="sample", file=out) as bar:
        assert isinstance(bar, PlainProgress)
        for _ in range(20):
            bar.update(10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # 10 %, ..., 90 %, then the last line at 100 %
    assert lines[0].startswith("simulate T=8: 20/200 samples (10%), ")
    assert lines[-1].startswith("simulate T=8: 200/200 samples (100%), ")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_plain_lines_unknown_total_disabled_and_empty():
    out = io.StringIO()
    bar = PlainProgress(desc="report", unit="sample", file=out, every=3600)
    bar.update(5)
    bar.update(1)
    bar.close()
    bar.close()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("report: 6 samples, ")
    quiet = io.StringIO()
    with progress_bar(total=10, disable=True, file=quiet) as bar:
        bar.update(10)
    with progress_bar(total=10, file=quiet):
        pass  # no work: no line
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    tty = Tty()
    with progress_bar(total=4, desc="batch", file=tty) as bar:
        assert isinstance(bar, tqdm)
        bar.update(4)
    assert "\r" in tty.getvalue() and "4/4" in tty.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))["plain"]


def convert(*args):
    result = CliRunner().invoke(main, [*args])
    assert result.exit_code == 0, result.output
    return result


def test_convert_logs_plain_progress_and_verbose_shows_library_logging(checkpoint, tmp_path):
    fast = [a for a in FAST if a != "--quiet"]
    args = ["--model", FACTORY, "--weights", str(checkpoint), "--mode", "max", "--T", "3", *fast]
    plain = convert("convert", *args, "--calibrate-weights", "--out", str(tmp_path / "a"))
    assert "\r" not in plain.stderr and "\x1b" not in plain.stderr
    assert "simulate plain max T=3: " in plain.stderr and "(100%)" in plain.stderr
    assert "converter." not in plain.stderr
    verbose = convert("-v", "convert", *args, "--calibrate-weights", "--out", str(tmp_path / "b"))
    logged = [line for line in verbose.stderr.splitlines() if line.startswith("converter.calibrate: ")]
    assert any("weight calibration:" in line for line in logged), verbose.stderr
    quiet = convert("convert", *args, "--quiet", "--out", str(tmp_path / "c"))
    assert "simulate" not in quiet.stderr


@pytest.mark.parametrize("flag,shown", [("-v", "-v"), ("--verbose", "--verbose"), ("-vv", "-v")])
def test_verbose_after_the_command_says_where_it_goes(flag, shown):
    result = CliRunner().invoke(main, ["simulate", "x.nir", flag])
    assert result.exit_code == 2
    assert (
        f"Error: No such option: {shown} here: --verbose/-v goes before the command (ann2snn {shown} simulate ...)"
        in result.output
    )
    assert "Did you mean" not in result.output
    other = CliRunner().invoke(main, ["plot", "raster", "x.nir", "--nope"])
    assert other.exit_code == 2 and "No such option '--nope'" in other.output
