"""The `omnitok` Typer app: one module per subcommand, assembled here. Imported only when a
command line goes to click (cli.app.main; a plain count does not need typer at all)."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from ._output import print_line
from .app import Interrupted, StdoutClosed
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
        except KeyboardInterrupt:
            raise Interrupted() from None


app = typer.Typer(
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


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print omnitok's version and exit."
    ),
) -> None:
    """Token counting for LLM workloads: exact, offline, fast enough to stream a corpus through."""


app.command("count", epilog=COUNT_EPILOG)(count)


app.command("compress", epilog=COMPRESS_EPILOG)(compress_cmd)
app.command("models", epilog=MODELS_EPILOG)(models_cmd)
app.command("validate", epilog=VALIDATE_EPILOG)(validate_cmd)
app.command("encode", epilog=ENCODE_EPILOG)(encode_cmd)
app.command("decode", epilog=DECODE_EPILOG)(decode_cmd)
app.command("truncate", epilog=TRUNCATE_EPILOG)(truncate_cmd)
app.command("serve", epilog=SERVE_EPILOG)(serve_cmd)
app.command("calibrate", epilog=CALIBRATE_EPILOG)(calibrate_cmd)
app.add_typer(cache_app, name="cache")
app.add_typer(bundle_app, name="bundle")


@app.command("version", epilog="Example:\n\n  omnitok version                # omnitok 0.1.0, as omnitok --version\n")
def version_cmd() -> None:
    """Print omnitok's version (as --version does)."""
    from .._version import __version__

    print_line(f"omnitok {__version__}")
