"""`omnitok bundle`: create verified tokenizer bundles online, install them on air-gapped hosts."""

from __future__ import annotations

import math

import typer

from .. import errors
from ._output import info, print_json, print_rows, wants_json

EPILOG = """\
Examples:

  omnitok bundle create --models gpt-4o,Qwen/Qwen2.5-7B-Instruct -o tok.tar.gz   # where the hub is reachable

  omnitok bundle verify tok.tar.gz && omnitok bundle install tok.tar.gz          # on the air-gapped host

  omnitok bundle list
"""
CREATE_EPILOG = """\
Examples:

  omnitok bundle create --models gpt-4o,Qwen/Qwen2.5-7B-Instruct -o tok.tar.gz

  omnitok bundle create --recipe openai -o openai.tar.gz                  # bundles/openai.toml

  omnitok bundle create --models my-org/model --local my-org/model=./model-dir -o tok.tar.gz
"""
INSPECT_EPILOG = """\
Examples:

  omnitok bundle inspect tok.tar.gz

  omnitok bundle inspect tok.tar.gz --json | jq '.files[].path'
"""
VERIFY_EPILOG = """\
Example:

  omnitok bundle verify tok.tar.gz            # exit 1 on any mismatch
"""
INSTALL_EPILOG = """\
Examples:

  omnitok bundle install tok.tar.gz

  omnitok bundle install tok.tar.gz --hf-cache --tiktoken-cache   # also where transformers and tiktoken look
"""
LIST_EPILOG = """\
Example:

  omnitok bundle list
"""

app = typer.Typer(
    help="Tokenizer bundles for air-gapped hosts: create online, verify, install offline.",
    epilog=EPILOG,
    no_args_is_help=True,
)


def _emit(data) -> None:
    print_json(data)


@app.command("create", epilog=CREATE_EPILOG)
def create_cmd(
    output: str = typer.Option(
        "tokenizers.tar.gz", "--output", "-o", help="The bundle to write (.tar.gz, .tar.zst, .tar)."
    ),
    models: str | None = typer.Option(None, "--models", help="Comma-separated model ids.", show_default=False),
    recipe: str | None = typer.Option(
        None, "--recipe", help="A recipe name (bundles/*.toml) or a .toml path.", show_default=False
    ),
    revision: list[str] | None = typer.Option(
        None, "--revision", help="Pin a hub repo: REPO=COMMIT (repeatable).", show_default=False
    ),
    local: list[str] | None = typer.Option(
        None, "--local", help="Take a model's files from a directory: ID=DIR.", show_default=False
    ),
    compression: str | None = typer.Option(
        None, "--compression", help="gzip (default), zstd, none; or by suffix.", show_default=False
    ),
    calibration: list[str] | None = typer.Option(
        None,
        "--calibration",
        help="Carry a calibration (omnitok calibrate --list): ID (repeatable); install puts it where counting looks.",
        show_default=False,
    ),
) -> None:
    """Gather the tokenizer files of some models (never weights) into one verified, deterministic archive."""
    import dataclasses

    from .. import api

    if models and recipe:
        raise errors.UsageError("give either --models or --recipe")
    if not (models or recipe or calibration):
        raise errors.UsageError("give --models, --recipe or --calibration")
    api.bundle_compression(output, compression)  # a bad --compression is refused before any download
    r = (
        api.load_recipe(recipe)
        if recipe
        else api.BundleRecipe("custom", [m.strip() for m in (models or "").split(",") if m.strip()])
    )
    pins = dict(_pairs(revision, "--revision"))
    dirs = dict(_pairs(local, "--local"))
    cals = [*r.calibrations, *(c.strip() for c in calibration or [])]
    r = dataclasses.replace(
        r, revisions={**r.revisions, **pins}, local_dirs={**r.local_dirs, **dirs}, calibrations=cals
    )
    info(f"omnitok: gathering {len(r.models)} model(s) for bundle {r.name!r} ...")
    path = api.create_bundle(r, output, compression)
    m = api.inspect_bundle(str(path))
    _emit(
        {
            "bundle": str(path),
            "name": m["name"],
            "files": len(m["files"]),
            "bytes": path.stat().st_size,
            "models": list(m["models"]),
        }
    )


def _pairs(values: list[str] | None, option: str):
    for v in values or []:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise errors.UsageError(f"{option} expects KEY=VALUE, got {v!r}")
        yield key.strip(), value.strip()


@app.command("inspect", epilog=INSPECT_EPILOG)
def inspect_cmd(
    bundle: str = typer.Argument(..., help="A bundle archive."),
    json_out: bool = typer.Option(False, "--json", help="The manifest as JSON."),
) -> None:
    """Show a bundle's manifest: models, files, sizes, hashes, sources, licences."""
    from .. import api

    m = api.inspect_bundle(bundle)
    if wants_json(json_out):
        print_json(m)
        return
    # The manifest's types are checked (bundle/manifest.py); print_rows shows cells as text, never
    # as rich markup.
    version = m.get("omnitok_version") or "?"
    cells = [
        (e["path"], e["size"], e["sha256"][:16], e.get("source"), e.get("revision"), e.get("license"))
        for e in m["files"]
    ]
    title = f"{m['name']} (format {m['format_version']}, omnitok {version})"
    print_rows(cells, ("path", "size", "sha256", "source", "revision", "license"), title)


@app.command("verify", epilog=VERIFY_EPILOG)
def verify_cmd(bundle: str = typer.Argument(..., help="A bundle archive.")) -> None:
    """Re-hash every file of a bundle against its manifest, and the files omnitok pins (tiktoken's
    rank files, the Gemma models) against omnitok's sha256, as install does (exit 1 on any mismatch)."""
    from .. import api

    problems = api.verify_bundle(bundle)
    _emit({"bundle": bundle, "ok": not problems, "problems": problems})
    if problems:
        raise typer.Exit(errors.EXIT_ERROR)


@app.command("install", epilog=INSTALL_EPILOG)
def install_cmd(
    bundle: str = typer.Argument(..., help="A bundle archive."),
    hf_cache: bool = typer.Option(False, "--hf-cache", help="Also into the Hugging Face cache layout (HF_HOME)."),
    tiktoken_cache: bool = typer.Option(False, "--tiktoken-cache", help="Also into TIKTOKEN_CACHE_DIR's layout."),
    max_member_mb: float = typer.Option(2048, "--max-member-mb", help="Refuse members larger than this."),
    max_total_mb: float = typer.Option(16384, "--max-total-mb", help="Refuse archives unpacking past this."),
) -> None:
    """Verify a bundle and install it into omnitok's asset store ($OMNITOK_HOME/assets), atomically."""
    from .. import api

    limits = api.InstallLimits(_megabytes(max_member_mb, "--max-member-mb"), _megabytes(max_total_mb, "--max-total-mb"))
    _emit(api.install_bundle(bundle, limits, hf_cache=hf_cache, tiktoken_cache=tiktoken_cache))


def _megabytes(value: float, option: str) -> int:
    """A size option in MB as bytes: a finite number > 0, else a usage error (never a traceback)."""
    if not math.isfinite(value) or value <= 0 or not math.isfinite(value * 1_000_000):
        raise errors.UsageError(f"{option} must be a finite number of megabytes > 0, not {value!r}")
    return max(1, int(value * 1_000_000))


@app.command("list", epilog=LIST_EPILOG)
def list_cmd() -> None:
    """The bundles installed in omnitok's asset store; `intact` is false, with the files under
    `replaced` and a warning, when a file changed since the install (another bundle replaced it)."""
    from .. import api

    for row in api.installed_bundles():
        _emit(row)
