"""`omnitok models`: every family, its ids and patterns, strategy chain, local assets, exactness."""

from __future__ import annotations

import typer

from . import _options as opt
from ._output import print_json, print_line, print_rows, wants_json

EPILOG = """\
Examples:

  omnitok models                                      # every family, its ids, chains and local assets

  omnitok models claude-sonnet-4-5                    # how this id would be counted

  omnitok models Qwen/Qwen2.5-7B-Instruct --json

  omnitok models --json | jq -r '.families[].models[].model'
"""


def models_cmd(
    model: str | None = typer.Argument(
        None,
        help="Resolve one model id and say how it would be counted.",
        show_default=False,
        autocompletion=opt.complete_model,
    ),
    json_out: bool = typer.Option(False, "--json", help="JSON (one document) instead of tables."),
    online: bool | None = typer.Option(
        None, "--online/--offline", help="Explain the online step too.", show_default=False
    ),
) -> None:
    """List the model families, their ids and patterns, strategy chains and local assets, or explain one id."""

    from .. import api

    if model:
        counter = api.Counter(model, online=online)
        try:
            info = api.explain(counter)
        finally:
            counter.close()
        if json_out:
            print_json(info)
        else:
            for k, v in info.items():
                print_line(f"{k + ':':12} {v}")
        return
    data = {
        "families": api.model_families(),
        "assets": api.asset_rows(),
    }
    if wants_json(json_out):
        print_json(data)
        return
    for fam in data["families"]:
        rows = [
            (r["model"], r["kind"], r["target"], None if r.get("error_band") is None else f"±{r['error_band']:.0%}")
            for r in fam["models"]
        ]
        print_rows(rows, ("model", "kind", "target", "error_band"), f"{fam['family']}: {fam['chain']}")
    assets = [(r["family"], r["asset"], "yes" if r["present"] else "no", r["where"]) for r in data["assets"]]
    print_rows(assets, ("family", "asset", "present", "where"), "local assets")
