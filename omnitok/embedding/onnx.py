"""The ONNX Runtime backend: the model exported once (torch.onnx.export) and cached by the hash of
its files, then run by an InferenceSession on every core. A BERT model is traced from bert.py's
plain-torch BERT (the same graph and outputs as transformers' BertModel, without importing
transformers: a first export ~4.6 s of CPU instead of ~7, fused ~6.5 instead of ~9.5); any other
through transformers.

Cache: $OMNITOK_HOME/assets/onnx/<key>/model.onnx, key = sha256 of the model's config and
weights, the layer count, the precision and EXPORT_VERSION. The file is written to a temporary
name and renamed, so concurrent first uses never see half a model. Its sha256 is recorded beside
it (model.json) when it is written and checked before it is loaded (`intact`): a file that is not
the one written (swapped for another valid model, edited, damaged) is exported again, so scores
never come from another model. The record's stat (size, mtime and ctime in ns, inode, device)
spares rehashing while all five are unchanged, and is kept only once the file's ctime is
SETTLED_NS old (so a change within the clock tick of the check cannot pass for the checked
file). The record is a checksum, not a signature: whoever can write $OMNITOK_HOME can write both.
int8 is ONNX Runtime's dynamic quantization (weights int8 per channel, activations quantized per
batch) of the fp32 export.
"fused" is fp32 exported with transformers' eager attention and passed through ONNX Runtime's
transformer optimizer (onnxruntime.transformers: one Attention, SkipLayerNormalization and BiasGelu
op each where the export has a dozen small ones), then each SkipLayerNormalization put back as
Add and LayerNormalization. No session fuses Add and LayerNormalization into SkipLayerNormalization
(SkipLayerNormFusion is disabled for every precision): ONNX Runtime 1.32's CPU kernel for it is
several times slower than LayerNormalization's (a per-op profile, one thread: 12% of the fused
graph's time at 512 tokens against under 2%; 17% of int8's on short sentences), and the plain fp32
export, which it does not fuse, is unchanged. Hidden states within 1e-4 of the plain export
(tests/test_onnx_embed.py); compress's short sentences run int8.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ..assets.store import sha256_file

# v3: BERT traced from bert.py (the same outputs, another file: a re-export gives the same bytes)
EXPORT_VERSION = "omnitok-onnx-v3"
PRECISIONS = ("fp32", "int8", "fused")
# a precision whose graph changed since EXPORT_VERSION: its own version (the others keep their files)
GRAPH_VERSION: dict[str, str] = {}
# ONNX Runtime fusions no session makes (see the module's docstring)
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]
OPSET = 17
# seconds spent exporting / quantizing in this process (benchmarks report them apart)
EXPORT_SECONDS: dict[str, float] = {}
RECORD = "model.json"  # beside model.onnx: its sha256, and its stat once settled
SETTLED_NS = 2 * 10**9  # a stat is remembered only once the file's ctime is this old


def model_hash(model_dir: Path) -> str:
    """sha256 of the model's config and weights. Reading ~90 MB costs ~0.06 s a process, so the
    digest is remembered beside the exports with each file's stat (size, mtime and ctime in ns,
    inode, device): a file changed in any way changes its ctime, and the files are read again."""
    files = [model_dir / "config.json", *sorted(model_dir.glob("*.safetensors")), *sorted(model_dir.glob("*.bin"))]
    files = [p for p in files if p.is_file()]
    stats = [[p.name, *_stat(p)] for p in files]
    memo = cache_root() / "hashes" / (hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:24] + ".json")
    known = _read_memo(memo)
    if known is not None and known.get("files") == stats:
        return known["sha256"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()
    # not changed while read, and settled (a change in the same clock tick would keep the stat)
    if [[p.name, *_stat(p)] for p in files] == stats and all(_settled(st[1:]) for st in stats):
        _write_memo(memo, {"files": stats, "sha256": value})
    return value


def _stat(path: Path) -> list[int]:
    return _stat_list(path.stat())


def _stat_list(st) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _settled(stat: list[int]) -> bool:
    """Whether a stat may stand for the file's content: its ctime is SETTLED_NS old, so any later
    change gives it another ctime (git's "racily clean" rule)."""
    return time.time_ns() - stat[2] >= SETTLED_NS


# --- the record of each export: its sha256 when written -----------------------------------------


def _read_record(export: Path) -> dict | None:
    """The record beside an export ({"sha256", "stat": 5 ints or None}), or None where it is
    missing or not what _write_record writes."""
    import json
    import re

    path = export.with_name(RECORD)
    try:
        if path.stat().st_size > 4096:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", data["sha256"]):
        return None
    stat = data.get("stat")
    if stat is not None and not (
        isinstance(stat, list) and len(stat) == 5 and all(type(x) is int and x >= 0 for x in stat)
    ):
        return None
    return {"sha256": data["sha256"], "stat": stat}


def _write_record(export: Path, sha256: str, stat: list[int] | None = None) -> None:
    _write_memo(export.with_name(RECORD), {"sha256": sha256, "stat": stat})


def intact(export: Path) -> bool:
    """Whether `export` is the file omnitok wrote there: its sha256 is the one recorded when it was
    written (not rehashed while size, mtime, ctime, inode and device are the recorded ones)."""
    record = _read_record(export)
    if record is None:
        return False
    try:
        before = _stat(export)
        if record["stat"] == before:
            return True
        digest = sha256_file(export)
        after = _stat(export)
    except OSError:
        return False
    if digest != record["sha256"]:
        return False
    if before == after and _settled(after):
        _write_record(export, digest, after)
    return True


def discard(export: Path) -> None:
    """Remove an export and its record (it is made again on next use); where the directory is not
    writable, they stay (and the export is made in a temporary directory instead: `exported`)."""
    try:
        export.unlink(missing_ok=True)
        export.with_name(RECORD).unlink(missing_ok=True)
    except OSError:
        pass


def _cached(target: Path) -> bool:
    """Whether the export at `target` is there and intact; one that is not is discarded."""
    if target.is_file() or target.is_symlink():
        if intact(target):
            return True
        discard(target)
    return False


def _temporary(target: Path) -> str:
    """A new empty file beside `target` (its directory made first) that the export is written to
    and then renamed over `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    return tmp


_SCRATCH: list[Path] = []  # this process's temporary export directory, once made
_scratch_lock = threading.Lock()


def _scratch(cause: OSError) -> Path:
    """A temporary directory for the exports of this process, for when $OMNITOK_HOME cannot be
    written (said once on stderr); removed when the process that made it exits."""
    with _scratch_lock:
        if not _SCRATCH:
            import atexit
            import shutil

            try:
                made = Path(tempfile.mkdtemp(prefix="omnitok-onnx-"))
            except OSError as e:
                raise _unwritable(cache_root(), cause, e) from None
            owner = os.getpid()  # a forked child exiting must not remove its parent's exports
            atexit.register(lambda: os.getpid() == owner and shutil.rmtree(made, ignore_errors=True))
            _SCRATCH.append(made)
            from .. import notices

            notices.warn_once(
                "onnx-scratch",
                f"{cache_root()} is not writable ({_reason(cause)}): the local model is exported to a "
                f"temporary directory for this run only (make OMNITOK_HOME writable to keep the export)",
            )
    return _SCRATCH[0]


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _unwritable(where: Path, e: OSError, scratch: OSError | None = None):
    """The one-line error for an export that cannot be written anywhere."""
    from ..errors import AssetError

    also = f"; nor is the temporary directory {tempfile.gettempdir()} ({_reason(scratch)})" if scratch else ""
    return AssetError(
        f"{where}: cannot write the local model's ONNX export ({_reason(e)}){also}; "
        "this directory (or OMNITOK_HOME) must be writable"
    )


def _read_memo(path: Path) -> dict | None:
    """A memo file, or None where it is missing, unreadable or not what _write_memo writes."""
    import json
    import re

    try:
        if path.stat().st_size > 1 << 20:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):  # RecursionError: nesting deeper than json allows
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    if not isinstance(data.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", data["sha256"]):
        return None
    return data


def _write_memo(path: Path, data: dict) -> None:
    """Written to a temporary name and renamed; a memo that cannot be written is only not kept."""
    import json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass


def cache_root() -> Path:
    from ..assets.store import omnitok_home

    return omnitok_home() / "assets" / "onnx"


def exported(model_dir: Path, num_layers: int | None = None, precision: str = "fp32") -> Path:
    """The cached ONNX file for this model, layer count and precision (fp32, int8 or fused);
    made on first use, and made again where the file there is not the one written (`intact`)."""
    from . import model_config

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    layers = num_layers or model_config(model_dir)["num_hidden_layers"]
    version = ":".join(filter(None, (EXPORT_VERSION, GRAPH_VERSION.get(precision))))
    key = hashlib.sha256(f"{model_hash(model_dir)}:{layers}:{precision}:{version}".encode()).hexdigest()[:24]
    target = cache_root() / key / "model.onnx"
    if _cached(target):
        return target
    try:
        tmp = _temporary(target)
    except OSError as e:  # $OMNITOK_HOME not writable: this run exports into a temporary directory
        target = _scratch(e) / key / "model.onnx"
        if _cached(target):
            return target
        try:
            tmp = _temporary(target)
        except OSError as e2:
            raise _unwritable(cache_root(), e, e2) from None
    start = time.perf_counter()
    try:
        if precision == "int8":
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            source = exported(model_dir, layers, "fp32")
            start = time.perf_counter()
            # per-channel weights with reduce_range: cosine to fp32 >= 0.98 where plain QInt8 fell to 0.87
            before = logging.root.manager.disable
            logging.disable(logging.WARNING)  # its hint to pre-process first, on the root logger
            try:
                quantize_dynamic(str(source), tmp, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
            finally:
                logging.disable(before)
        elif precision == "fused":
            _export(model_dir, layers, tmp, attention="eager")
            _fuse(tmp, model_config(model_dir))
        else:
            _export(model_dir, layers, tmp)
        _write_record(target, sha256_file(Path(tmp)))  # first: the file never appears without it
        os.replace(tmp, target)
    except OSError as e:  # a full disk while the export is written, a model file that cannot be read
        from ..errors import AssetError

        raise AssetError(f"{model_dir}: cannot export this model to {target.parent}: {_reason(e)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    EXPORT_SECONDS[precision] = EXPORT_SECONDS.get(precision, 0.0) + time.perf_counter() - start
    return target


def _fuse(path: str, config: dict) -> None:
    """ONNX Runtime's BERT fusions, in place (offline graph optimizations left to the session)."""
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    # no SkipLayerNormalization to put back as Add and LayerNormalization: the same graph, ~0.5 s less
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        model = optimize_model(
            path,
            model_type="bert",
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
            opt_level=0,
            optimization_options=options,
        )
        _unfuse_skip_layer_norm(model.model)
        model.save_model_to_file(path)
    finally:
        logging.disable(before)


def _unfuse_skip_layer_norm(model) -> None:
    """Each SkipLayerNormalization(x, skip, gamma, beta[, bias]) as Add(Add(x, bias), skip) and
    LayerNormalization (axis -1, its epsilon), in place. Only nodes with one output are rewritten
    (the BERT optimizer makes no others here); any other keeps its fused op."""
    from onnx import helper

    nodes = []
    for n in model.graph.node:
        if n.op_type != "SkipLayerNormalization" or len([o for o in n.output if o]) != 1 or not n.output[0]:
            nodes.append(n)
            continue
        x, skip, gamma, beta = n.input[:4]
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        name = n.name or n.output[0]
        if len(n.input) > 4 and n.input[4]:
            nodes.append(helper.make_node("Add", [x, n.input[4]], [f"{name}/bias"], name=f"{name}/AddBias"))
            x = f"{name}/bias"
        nodes.append(helper.make_node("Add", [x, skip], [f"{name}/sum"], name=f"{name}/AddSkip"))
        nodes.append(
            helper.make_node(
                "LayerNormalization", [f"{name}/sum", gamma, beta], [n.output[0]], name=f"{name}/LayerNorm",
                axis=-1, epsilon=float(attrs.get("epsilon", 1e-12)),
            )
        )  # fmt: skip
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _export(model_dir: Path, layers: int, out: str, attention: str | None = None) -> None:
    try:
        import torch
    except ImportError:
        from ..errors import UsageError

        raise UsageError(
            "the first use of the local model exports it with torch (pip install 'omnitok[embeddings]')"
        ) from None

    from . import bert

    model = bert.load(model_dir, layers, attention)  # BERT without transformers, where it can
    if model is None:
        from .torch_backend import load_model

        model = load_model(model_dir, layers, attention)

    class Hidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask)[0]

    ids = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden(model),
            (ids, torch.ones_like(ids)),
            out,
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
            opset_version=OPSET,
            dynamo=False,
        )


class OrtEncoder:
    """One InferenceSession whose runs are single-threaded (no intra-op threads, no spinning):
    callers run `parallel` batches at once from the threads of `pool()` (a session's run is
    thread-safe). On 2 shared cores this beat one run at a time over intra-op threads
    (benchmarks/embed_bench.py --sweep): small batches stay in a core's cache, and no run waits
    for a straggling sibling thread that another process has preempted."""

    def __init__(self, model_dir: Path, num_layers: int | None = None, precision: str = "fp32"):
        import onnxruntime as ort

        from . import MAX_BATCH, MAX_TOKENS, cores, model_config

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3

        def session(path: Path):
            return ort.InferenceSession(
                str(path), so, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
            )

        path = exported(model_dir, num_layers, precision)  # checked against its record, or made now
        try:
            self.session = session(path)
        except Exception:  # noqa: BLE001 - ONNX Runtime's own error types (InvalidProtobuf, Fail, ...)
            # a cached export this runtime cannot load (damaged, cut short, from elsewhere): made again once
            discard(path)
            path = exported(model_dir, num_layers, precision)
            try:
                self.session = session(path)
            except Exception as e:  # noqa: BLE001
                from ..errors import AssetError

                raise AssetError(f"{path}: ONNX Runtime cannot load this export: {e}") from None
        self.hidden_size = int(model_config(model_dir)["hidden_size"])
        self.name = f"onnxruntime-{precision}"
        self.parallel = cores()
        self.max_batch, self.max_tokens = MAX_BATCH, MAX_TOKENS
        self._pool = None
        self._lock = threading.Lock()

    def pool(self):
        """The threads that run batches at once (made on first use; None on one core)."""
        if self.parallel < 2:
            return None
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="omnitok-ort")
        return self._pool

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
