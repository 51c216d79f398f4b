"""The `omnitok` Typer app: one module per subcommand, assembled here. Imported only when a
command line goes to click (cli.app.main; a plain count does not need typer at all)."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from ._output import print_line
from .app import Interrupted, StdoutClosed, Terminated, completing
from .bundle import app as bundle_app
from .cache import app as cache_app
from .calibrate import EPILOG as CALIBRATE_EPILOG
from .calibrate import calibrate_cmd
from .compress import EPILOG as COMPRESS_EPILOG
from .compress import compress_cmd
from .count import EPILOG as COUNT_EPILOG
from .count import count
from .models import EPILOG as MODELS_EPILOG
from .models import models_cmd
from .serve import EPILOG as SERVE_EPILOG
from .serve import serve_cmd
from .tokens import DECODE_EPILOG, ENCODE_EPILOG, TRUNCATE_EPILOG, decode_cmd, encode_cmd, truncate_cmd
from .validate import EPILOG as VALIDATE_EPILOG
from .validate import validate_cmd

ROOT_EPILOG = """\
Examples:

  omnitok count -m gpt-4o --text "hello world"              # 2

  omnitok count -m claude-sonnet-4-5 prompts.jsonl --max-tokens 8000

  omnitok models                                            # the models omnitok counts

  omnitok COMMAND --help                                    # each command's options and examples
"""


class _Group(TyperGroup):
    """The root command group. typer turns a broken pipe into exit 1 (the code for a bad record)
    and Ctrl-C into a silent exit 130; both are caught here first, as exceptions of our own that
    typer lets through, so that main() reports them the omnitok way for every command."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise StdoutClosed() from None
        except KeyboardInterrupt as e:
            raise Interrupted(terminated=isinstance(e, Terminated)) from None


def _typer() -> typer.Typer:
    return typer.Typer(
        cls=_Group,
        name="omnitok",
        help="Token counting for LLM workloads: exact, offline, fast enough to stream a corpus through.",
        epilog=ROOT_EPILOG,
        no_args_is_help=True,
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        print_line(f"omnitok {__version__}")
        raise typer.Exit()


def root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print omnitok's version and exit."
    ),
) -> None:
    """Token counting for LLM workloads: exact, offline, fast enough to stream a corpus through."""


def version_cmd() -> None:
    """Print omnitok's version (as --version does)."""
    from .._version import __version__

    print_line(f"omnitok {__version__}")


# Each command: (its function or sub-app, its epilog), in the order `omnitok --help` lists them.
COMMANDS: dict[str, tuple] = {
    "count": (count, COUNT_EPILOG),
    "compress": (compress_cmd, COMPRESS_EPILOG),
    "models": (models_cmd, MODELS_EPILOG),
    "validate": (validate_cmd, VALIDATE_EPILOG),
    "encode": (encode_cmd, ENCODE_EPILOG),
    "decode": (decode_cmd, DECODE_EPILOG),
    "truncate": (truncate_cmd, TRUNCATE_EPILOG),
    "serve": (serve_cmd, SERVE_EPILOG),
    "calibrate": (calibrate_cmd, CALIBRATE_EPILOG),
    "cache": (cache_app, None),
    "bundle": (bundle_app, None),
    "version": (version_cmd, "Example:\n\n  omnitok version                # omnitok 0.1.0, as omnitok --version\n"),
}


def build(names=None) -> typer.Typer:
    """The Typer app with the commands `names` (None: all). click builds every command an app has
    on each run (typer reads each one's signature and types: ~0.05-0.1 s of CPU for all of them);
    a command line that names its command needs only that one (main, below)."""
    built = _typer()
    built.callback()(root)
    for name, (target, epilog) in COMMANDS.items():
        if names is not None and name not in names:
            continue
        if isinstance(target, typer.Typer):
            built.add_typer(target, name=name)
        else:
            built.command(name, epilog=epilog)(target)
    return built


app = build()


def main(args: list[str]):
    """Run a command line through click: with only its command's app where its first word names
    one (anything else, shell completion included, goes to the whole app: help, a typo's
    suggestions)."""
    first = args[0] if args else None
    if first in COMMANDS and not completing():
        return build((first,))(args=args, standalone_mode=False)
    return app(args=args, standalone_mode=False)
