"""The `omnitok` command: one Typer app, one module per subcommand."""

from __future__ import annotations

import os
import sys

import typer

from .. import errors
from .bundle import app as bundle_app
from .cache import app as cache_app
from .compress import EPILOG as COMPRESS_EPILOG
from .compress import compress_cmd
from .count import EPILOG as COUNT_EPILOG
from .count import count
from .models import models_cmd
from .validate import EPILOG as VALIDATE_EPILOG
from .validate import validate_cmd

app = typer.Typer(
    name="omnitok",
    help="Token counting for LLM workloads: exact, offline, fast enough to stream a corpus through.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        print(f"omnitok {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print omnitok's version and exit."
    ),
) -> None:
    """Token counting for LLM workloads: exact, offline, fast enough to stream a corpus through."""


app.command("count", epilog=COUNT_EPILOG)(count)


app.command("compress", epilog=COMPRESS_EPILOG)(compress_cmd)
app.command("models")(models_cmd)
app.command("validate", epilog=VALIDATE_EPILOG)(validate_cmd)
app.add_typer(cache_app, name="cache")
app.add_typer(bundle_app, name="bundle")


@app.command("version")
def version_cmd() -> None:
    """Print omnitok's version."""
    from .._version import __version__

    print(__version__)


def main(argv: list[str] | None = None) -> None:
    """Entry point: turns user errors into a message and an exit code, never a traceback."""
    from .. import notices
    from ._output import warn

    notices.reset()  # one warning per cause, per run, as "omnitok: warning: ..." on stderr
    notices.set_handler(warn)
    try:
        result = app(args=argv, standalone_mode=False)
    except errors.OmnitokError as e:
        from ._output import report

        sys.exit(report(e))
    except KeyboardInterrupt:
        sys.stderr.write("omnitok: interrupted\n")
        sys.exit(errors.EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as e:  # click's own usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.stderr.write("omnitok: aborted\n")
            sys.exit(errors.EXIT_INTERRUPTED)
        raise
    sys.exit(result if isinstance(result, int) else 0)
