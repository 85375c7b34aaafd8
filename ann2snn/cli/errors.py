"""The edge between library and command line: a library error becomes a one-line
``click.ClickException`` (exit 1, no traceback) unless ``--debug`` asks for the traceback."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings

import click


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (later lines joined with ' | ')."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' | '.join(lines)}" if lines else type(exc).__name__


def library_errors(command):
    """Decorator for a click command: adds ``--debug`` and turns library errors into a one-line
    message with exit status 1 (``--debug``: the exception propagates with its traceback);
    Ctrl-C exits with status 130 saying that a re-run resumes."""

    @click.option("--debug", is_flag=True, help="On an error, show the full traceback.")
    @functools.wraps(command)
    def wrapper(*args, debug: bool, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except BrokenPipeError:  # the reader of stdout left (``| head``): stop quietly, as Unix tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
            raise SystemExit(141) from None  # 128 + SIGPIPE, the status a shell shows for such a tool
        except KeyboardInterrupt:
            click.echo(
                "\ninterrupted: finished combinations and their files are kept; run the same command again to "
                "resume where it stopped",
                err=True,
            )
            raise SystemExit(130) from None
        except Exception as exc:
            if debug:
                raise
            raise click.ClickException(f"{one_line(exc)} (--debug shows the traceback)") from None

    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


def warnings_as_lines() -> None:
    """Print library warnings as one ``warning: ...`` line each on stderr (not Python's
    ``file:line: UserWarning`` form), each distinct message once."""
    warnings.showwarning = _show_warning


LIBRARY_LOGGERS = ("ann2snn", "converter", "simulator", "exporters")


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment (click's test runner swaps it per call)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def show_logging(verbosity: int) -> None:
    """Show the library's log records on stderr as ``converter.calibrate: message`` lines:
    ``verbosity`` 1 shows INFO and above, 2 or more DEBUG; 0 changes nothing (warnings still
    reach the user through :func:`warnings_as_lines`)."""
    if verbosity <= 0:
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    level = logging.INFO if verbosity == 1 else logging.DEBUG
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h, _StderrHandler)]
        logger.addHandler(handler)
        logger.setLevel(level)


class RankedGroup(click.Group):
    """A command group whose error messages start with ``rank N:`` when ``torchrun`` started
    several processes (``WORLD_SIZE`` > 1), so that the rank whose options or files are wrong
    (e.g. a ``--data`` path missing on one node) is named."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if isinstance(exc, click.NoSuchOption) and exc.option_name.lstrip("-") in ("v", "vv", "vvv", "verbose"):
                exc.message = (  # type: ignore[misc]  # the group's option, given after the command
                    f"No such option: {exc.option_name} here: --verbose/-v goes before the command "
                    f"(ann2snn {exc.option_name} {ctx.invoked_subcommand or 'COMMAND'} ...)"
                )
                exc.possibilities = None  # type: ignore[misc]  # no "Did you mean" another option
            rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE", "1")
            if rank is not None and world.isdigit() and int(world) > 1 and not exc.message.startswith("rank "):
                exc.message = f"rank {rank}: {exc.message}"  # type: ignore[misc]  # click marks it Final
            raise
