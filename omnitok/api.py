"""The front ends' door: what the command line, the server and the Ray adapters need from the
library, and nothing more (a Python user's API is `import omnitok`, which re-exports its core).

The `omnitok` command imports nothing else of the package below this module (import-linter's
"cli" contract in `.importlinter`). By concern:

- counting: `Counter`, `count`, `count_batch`, `count_files`, `resolve`, `load_tokenizer`,
  `default_model`, `CountResult` (omnitok.counter);
- one options object per command (omnitok.options): `CountOptions`, `CompressOptions`,
  `ValidateOptions`: checked when made, `to_dict()` / `from_dict()` plain data;
- the run driver (omnitok.run): `ErrorPolicy` (--on-error), `run_count`, `run_compress`,
  `run_validate`, `written` (an output committed only when the run ended well), `Outcome`;
- records in and results out: `open_inputs` (files, stdin or texts -> a stream of records),
  `early_reference` (a large count's reference engine loaded beside the fast engine), `Extractor`, `detect_format`,
  `argument_text` (a text from the command line, refused if its bytes are not UTF-8), `utf8_error` (where
  bytes stop being UTF-8, as every reader says it), `read_error` (a failed read in words, as every
  reader says it), `count_stream`, `Summary`, `open_output` / `check_output` (stdout
  or a file that appears whole), `output_format` / `make_sink` (JSONL, JSON, CSV, Parquet,
  table, number, --add-field), `json_dumps` (ids past 64 bits written exactly);
- the stages: compression (`compress`, `Compressor`, `CompressExtractor`, `check_budget`),
  validation (`validate`, `write_report`, `REPORT_FORMATS`), bundles (`BundleRecipe`,
  `load_recipe`, `create_bundle`, `inspect_bundle`, `verify_bundle`, `install_bundle`,
  `InstallLimits`, `installed_bundles`, `bundle_compression`, `pre_download`), Claude
  calibrations (`calibrate`, `installed_calibrations`, `load_calibration`), token ids
  (`Encoder`, `parse_ids`), the embedding device (`set_default_device`);
- the cache: `Cache` (omnitok.cache_api), `CacheSettings`, `CacheError`, `cache_settings`,
  `open_cache_tiers`, `recorded_cache_stats`, `cache_tags`, `redact_url`; `TokenizerSettings`;
- what omnitok knows: `model_families`, `asset_rows`, `explain` (omnitok.catalog),
  `rank_files_only` (omnitok.families).

Everything past counting loads on first use (`_LAZY`; its `TYPE_CHECKING` imports name the same
objects, which tests/test_public_objects.py checks), so `import omnitok.api` (every `omnitok
count`) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .counter import Counter, CountResult, count, count_batch, count_files, default_model, load_tokenizer, resolve
from .options import CompressOptions, CountOptions, ValidateOptions
from .records import Extractor, fields_given

__all__ = [
    "CompressOptions",
    "CountOptions",
    "CountResult",
    "Counter",
    "Extractor",
    "fields_given",
    "count",
    "count_batch",
    "count_files",
    "count_stream",
    "default_model",
    "early_reference",
    "load_tokenizer",
    "open_inputs",
    "resolve",
    "ValidateOptions",
]


def open_inputs(
    paths,
    extractor: Extractor,
    input_format: str = "auto",
    lines: bool = False,
    keep_raw: bool = False,
    texts: list[str] | None = None,
):
    """Files ('-' for stdin; none: stdin), or `texts`, as one stream of records in input order
    (JSONL, Parquet, text, `.gz`). `extractor` says what in a record is counted; a bad record
    comes out with `error` set. The stream has `paths`, `progress` and `single_text`."""
    from .io.readers import InputStream

    return InputStream(list(paths), extractor, input_format, lines, keep_raw, texts)


def count_stream(stream, counter: Counter, jobs: int | None = 1, progress=None, *, runs: bool = False):
    """Count a stream of records with a counter: one `Counted` a record, in input order (error
    records pass through with their error). `jobs` None: auto; `progress` is called once a batch;
    `runs=True`: records counted in shard workers may come as `CountedRun` columns."""
    from .pipeline import count_records

    return count_records(stream, counter.strategy, jobs, progress, runs=runs)


def early_reference(paths, jobs: int | None):
    """A context for making the Counter of a count over `paths` with `jobs` (None: auto) and
    running it: where the input is large (tokenizers.early_reference.MIN_BYTES, files on disk)
    and two cores or more may count it, the fast engine the Counter loads forks its reference
    engine's process first, which loads the reference at once on a core that would otherwise
    wait (omnitok.tokenizers.early_reference says why and what it costs). The Counter made keeps
    the process only if its strategy uses it; the count's pipeline uses it and closes it, and so
    does the context's end. Elsewhere the context does nothing."""
    import contextlib
    import os

    from . import cpu
    from .tokenizers import early_reference as early

    total = 0
    for path in paths:
        with contextlib.suppress(OSError, ValueError):  # not there (the run reports it), or not a path
            total += os.stat(path).st_size if path != "-" else 0
    return early.started(enabled=total >= early.MIN_BYTES and jobs != 1 and cpu.cores() >= 2)


# name -> (module, attribute): loaded on first use by __getattr__. The TYPE_CHECKING imports
# below name the same objects, for type checkers and for import-linter's layer check.
_LAZY = {
    # the run driver: records through a stage to rows and one Outcome
    "ErrorPolicy": ("run", "ErrorPolicy"),
    "Outcome": ("run", "Outcome"),
    "run_count": ("run", "count"),
    "run_compress": ("run", "compress"),
    "run_validate": ("run", "validate"),
    "written": ("run", "written"),
    # records in, results out
    "detect_format": ("io.formats", "detect_format"),
    "argument_text": ("io.inputs", "argument_text"),
    "utf8_error": ("io.inputs", "utf8_error"),
    "read_error": ("io.inputs", "read_error"),
    "Summary": ("summary", "Summary"),
    "open_output": ("io.output", "open_output"),
    "check_output": ("io.output", "check_output"),
    "output_format": ("io.writers", "format_for_output"),
    "make_sink": ("io.writers", "make_sink"),
    "json_dumps": ("io.ids", "dumps"),
    # compression
    "Compressor": ("compression", "Compressor"),
    "check_budget": ("compression", "check_budget"),
    "compress": ("compression", "compress"),
    "CompressExtractor": ("compression.stream", "CompressExtractor"),
    "set_default_device": ("embedding", "set_default_device"),
    # validation
    "validate": ("validation", "validate"),
    "validate_options": ("validation", "validate_options"),
    "REPORT_FORMATS": ("validation.report", "FORMATS"),
    "write_report": ("validation.report", "write"),
    # Claude calibrations
    "calibrate": ("calibrate", "calibrate"),
    "installed_calibrations": ("calibration", "installed"),
    "load_calibration": ("calibration", "load"),
    # bundles
    "BundleRecipe": ("bundle", "Recipe"),
    "load_recipe": ("bundle", "load_recipe"),
    "create_bundle": ("bundle", "create"),
    "inspect_bundle": ("bundle", "inspect"),
    "verify_bundle": ("bundle", "verify"),
    "install_bundle": ("bundle", "install"),
    "installed_bundles": ("bundle", "installed"),
    "pre_download": ("bundle", "pre_download"),
    "InstallLimits": ("bundle.reading", "Limits"),
    "bundle_compression": ("bundle.archive", "compression_for"),
    # token ids
    "Encoder": ("tokens", "Encoder"),
    "parse_ids": ("tokens", "parse_ids"),
    # the cache
    "Cache": ("cache_api", "Cache"),
    "cache_tags": ("cache_api", "cache_tags"),
    "open_cache_tiers": ("cache_api", "open_tiers"),
    "recorded_cache_stats": ("cache_api", "recorded_stats"),
    "cache_settings": ("cache", "settings_from"),
    "CacheSettings": ("cache", "CacheSettings"),
    "CacheError": ("cache", "CacheError"),
    "redact_url": ("cache", "redact_url"),
    # settings
    "TokenizerSettings": ("config", "TokenizerSettings"),
    # what omnitok knows
    "model_families": ("catalog", "model_families"),
    "asset_rows": ("catalog", "asset_rows"),
    "explain": ("catalog", "explain"),
    "rank_files_only": ("families", "rank_files_only"),
}

__all__ += sorted(_LAZY)

if TYPE_CHECKING:  # the same objects as _LAZY names (grimp reads these imports too)
    from .bundle import Recipe as BundleRecipe  # noqa: F401
    from .bundle import create as create_bundle  # noqa: F401
    from .bundle import inspect as inspect_bundle  # noqa: F401
    from .bundle import install as install_bundle  # noqa: F401
    from .bundle import installed as installed_bundles  # noqa: F401
    from .bundle import load_recipe, pre_download  # noqa: F401
    from .bundle import verify as verify_bundle  # noqa: F401
    from .bundle.archive import compression_for as bundle_compression  # noqa: F401
    from .bundle.reading import Limits as InstallLimits  # noqa: F401
    from .cache import CacheError, CacheSettings, redact_url  # noqa: F401
    from .cache import settings_from as cache_settings  # noqa: F401
    from .cache_api import Cache, cache_tags  # noqa: F401
    from .cache_api import open_tiers as open_cache_tiers  # noqa: F401
    from .cache_api import recorded_stats as recorded_cache_stats  # noqa: F401
    from .calibrate import calibrate  # noqa: F401
    from .calibration import installed as installed_calibrations  # noqa: F401
    from .calibration import load as load_calibration  # noqa: F401
    from .catalog import asset_rows, explain, model_families  # noqa: F401
    from .compression import Compressor, check_budget, compress  # noqa: F401
    from .compression.stream import CompressExtractor  # noqa: F401
    from .config import TokenizerSettings  # noqa: F401
    from .embedding import set_default_device  # noqa: F401
    from .families import rank_files_only  # noqa: F401
    from .io.formats import detect_format  # noqa: F401
    from .io.ids import dumps as json_dumps  # noqa: F401
    from .io.inputs import argument_text, read_error, utf8_error  # noqa: F401
    from .io.output import check_output, open_output  # noqa: F401
    from .io.writers import format_for_output as output_format  # noqa: F401
    from .io.writers import make_sink  # noqa: F401
    from .run import ErrorPolicy, Outcome, written  # noqa: F401
    from .run import compress as run_compress  # noqa: F401
    from .run import count as run_count  # noqa: F401
    from .run import validate as run_validate  # noqa: F401
    from .summary import Summary  # noqa: F401
    from .tokens import Encoder, parse_ids  # noqa: F401
    from .validation import validate, validate_options  # noqa: F401
    from .validation.report import FORMATS as REPORT_FORMATS  # noqa: F401
    from .validation.report import write as write_report  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __package__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omnitok.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
