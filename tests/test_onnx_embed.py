"""The ONNX Runtime backend (omnitok.embedding) against the torch model and bert-score.

Tolerances: fp32 embeddings <= 1e-4 max abs on unit-norm vectors; int8 (compress's CPU default)
cosine to fp32 >= 1 - INT8_TOLERANCE; BERTScore (fp32 always) <= 1e-4 of bert-score's.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
if importlib.util.find_spec("torch") is None:  # imported where used: collection stays cheap on every worker
    pytest.skip("could not import 'torch'", allow_module_level=True)

from omnitok.compression import Compressor  # noqa: E402
from omnitok.compression.embed import INT8_TOLERANCE, MAX_LENGTH, LocalEmbedder  # noqa: E402
from omnitok.embedding import batches, resolve_device  # noqa: E402
from omnitok.embedding.torch_backend import TorchEncoder  # noqa: E402
from omnitok.validation.bertscore import BERTScorer, default_model_dir  # noqa: E402

from .test_bertscore import CANDS, REFS  # noqa: E402

LONG = " ".join(f"token{i} means something else in sentence {i}." for i in range(120))  # > 512 word pieces
TEXTS = ["", "hi", "The cat sat on the mat.", "中文 字符 and café", LONG, "Paris " * 300, "  spaced  "]


def reference_vectors(texts: list[str]) -> np.ndarray:
    """sentence-transformers' recipe with transformers' own tokenizer, one text at a time."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    d = str(default_model_dir())
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    model = AutoModel.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for t in texts:
            enc = tok([t], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            pooled = model(**enc)[0].mean(1)
            out.append(torch.nn.functional.normalize(pooled, dim=1)[0].numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def reference():
    return reference_vectors(TEXTS)


def test_fp32_equals_the_torch_model(reference):
    emb = LocalEmbedder(precision="fp32")
    assert emb.encoder.name == "onnxruntime-fp32"
    got = emb(TEXTS)
    assert np.abs(got - reference).max() <= 1e-4
    # truncation at 256 word pieces: the long texts are cut as transformers cuts them
    assert len(emb.tokenizer.encode(LONG).ids) == MAX_LENGTH


def test_the_exported_bert_equals_transformers_bert_model():
    """The export's BERT (omnitok/embedding/bert.py: plain torch, no transformers) gives
    transformers' BertModel's hidden states at every unpadded token of a padded batch, cut to 3
    layers as bert-score cuts it, with sdpa and with eager attention (the fused export's)."""
    import torch
    from transformers import AutoModel

    from omnitok.embedding import bert, pad, tokenizer

    d, layers = default_model_dir(), 3
    ids = [e.ids for e in tokenizer(d, MAX_LENGTH).encode_batch([*TEXTS[:4], LONG[:400]])]
    x, mask = (torch.from_numpy(a) for a in pad(ids))
    for attention in ("sdpa", "eager"):
        want = AutoModel.from_pretrained(
            str(d), local_files_only=True, dtype=torch.float32, attn_implementation=attention
        )
        want.encoder.layer = torch.nn.ModuleList(list(want.encoder.layer[:layers]))
        ours = bert.load(d, layers, attention)
        assert ours is not None and len(ours.encoder.layer) == layers
        with torch.inference_mode():
            a = want.eval()(input_ids=x, attention_mask=mask)[0].numpy()
            b = ours(input_ids=x, attention_mask=mask)[0].numpy()
        for j, s in enumerate(ids):
            assert np.abs(a[j, : len(s)] - b[j, : len(s)]).max() <= 1e-5, (attention, j)


def test_a_model_the_exported_bert_does_not_reproduce_goes_through_transformers(tmp_path):
    """bert.load answers None (the export then loads the model with transformers) for another
    architecture, activation or position embedding, or weights it cannot read by name."""
    import json

    from omnitok.embedding import bert
    from omnitok.errors import UsageError

    d = default_model_dir()
    config = json.loads((d / "config.json").read_text())
    for change in ({"model_type": "roberta"}, {"hidden_act": "gelu_new"}, {"position_embedding_type": "relative_key"}):
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        assert bert.load(tmp_path, 6) is None, change
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert bert.load(tmp_path, 6) is None  # no weights at all
    (tmp_path / "model.safetensors").symlink_to(d / "model.safetensors")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert bert.load(tmp_path, 6) is None  # two weight files: which one transformers reads is its call
    (tmp_path / "pytorch_model.bin").unlink()
    assert bert.load(tmp_path, 6) is not None
    with pytest.raises(UsageError, match="num_layers must be 1..6"):
        bert.load(tmp_path, 7)


def test_int8_within_its_tolerance(reference):
    emb = LocalEmbedder(precision="int8")
    assert emb.encoder.name == "onnxruntime-int8"
    cosine = (emb(TEXTS) * reference).sum(axis=1)
    assert cosine.min() >= 1 - INT8_TOLERANCE, cosine


def test_torch_backend_batched_equals_one_at_a_time(reference):
    emb = LocalEmbedder(precision="fp32")
    emb.encoder = TorchEncoder(default_model_dir(), None, "cpu")
    assert np.abs(emb(TEXTS) - reference).max() <= 1e-4


def test_batches_on_all_cores_equal_one_at_a_time(reference):
    """run_batches spreads batches over the cores (a single-threaded run each): the same vectors as
    running them in turn, every text once."""
    from omnitok.embedding import run_batches

    emb = LocalEmbedder(precision="fp32")
    assert emb.encoder.pool() is not None or emb.encoder.parallel < 2
    texts = TEXTS + [f"sentence number {i} about {'cats ' * (i % 7)}" for i in range(40)]
    parallel = emb._embed(texts)
    ids = [e.ids for e in emb.tokenizer.encode_batch(texts)]
    seen: list[int] = []

    class InTurn:
        hidden_size, max_batch, max_tokens = emb.encoder.hidden_size, 3, 64
        run = staticmethod(emb.encoder.run)

        def pool(self):
            return None

    def note(idx, hidden, mask):
        seen.extend(idx)
        assert hidden.shape[:2] == mask.shape and mask.sum(1).tolist() == [len(ids[j]) for j in idx]

    run_batches(InTurn(), ids, note)
    assert sorted(seen) == list(range(len(texts)))
    emb.batch_size = 1  # one text a batch, in turn: no padding at all
    emb.encoder, pooled = InTurn(), emb.encoder
    try:
        one_by_one = emb._embed(texts)
    finally:
        emb.encoder = pooled
    assert np.abs(parallel - one_by_one).max() <= 1e-5
    assert np.abs(parallel[: len(TEXTS)] - reference).max() <= 1e-4


def test_fused_export_equals_the_plain_one():
    """BERTScore's CPU graph (eager attention, ONNX Runtime's BERT fusions) gives the plain
    export's hidden states within 1e-4 at every token, padded batches included."""
    from omnitok.embedding import encoder, pad

    scorer = BERTScorer()
    ids = scorer.encode_many([*CANDS, LONG, "Paris " * 600])
    x, mask = pad(ids)
    plain = encoder(str(default_model_dir()), 6, "cpu", "fp32").run(x, mask)
    fused = scorer.encoder.run(x, mask)
    assert scorer.encoder.name == "onnxruntime-fused"
    for j, s in enumerate(ids):
        assert np.abs(plain[j, : len(s)] - fused[j, : len(s)]).max() <= 1e-4, j


def test_fused_graph_keeps_layer_norm_apart_from_the_residual_add():
    """The fused graph has ONNX Runtime's Attention and BiasGelu but LayerNormalization after Add,
    not SkipLayerNormalization (slow on CPU: see omnitok/embedding/onnx.py), and no session fuses
    them again."""
    from collections import Counter

    import onnx

    from omnitok.embedding.onnx import DISABLED_OPTIMIZERS, exported

    graph = onnx.load(str(exported(default_model_dir(), 6, "fused")), load_external_data=False).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["SkipLayerNormalization"] == 0
    assert (ops["Attention"], ops["BiasGelu"], ops["LayerNormalization"]) == (6, 6, 12)
    assert DISABLED_OPTIMIZERS == ["SkipLayerNormFusion"]


def test_batches_cover_every_text_once_by_length():
    lengths = [5, 300, 2, 2, 40, 41, 39, 7, 512, 1]
    got = batches(lengths, max_batch=3, max_tokens=600)
    assert sorted(i for b in got for i in b) == list(range(len(lengths)))
    for b in got:
        assert len(b) <= 3 and (len(b) == 1 or lengths[b[0]] * len(b) <= 600)
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_bertscore_equals_bert_score_through_onnx():
    from bert_score import BERTScorer as Reference

    cands, refs = [*CANDS, LONG, "Paris " * 600], [*REFS, LONG[:900], "Paris is the capital. " * 40]
    ours = BERTScorer()
    assert ours.encoder.name == "onnxruntime-fused"
    P, R, F = Reference(model_type=str(default_model_dir()), num_layers=6).score(cands, refs)
    for i, (p, r, f) in enumerate(ours.score(cands, refs)):
        assert max(abs(p - P[i].item()), abs(r - R[i].item()), abs(f - F[i].item())) <= 1e-4, i


def test_bertscore_fewer_layers_exports_that_layer():
    from bert_score import BERTScorer as Reference

    P, R, F = Reference(model_type=str(default_model_dir()), num_layers=3).score(CANDS, REFS)
    for i, (p, r, f) in enumerate(BERTScorer(num_layers=3).score(CANDS, REFS)):
        assert max(abs(p - P[i].item()), abs(r - R[i].item()), abs(f - F[i].item())) <= 1e-4, i


def test_export_is_cached_by_the_model_hash(tmp_path, monkeypatch):
    from omnitok.embedding import onnx

    monkeypatch.setenv("OMNITOK_HOME", str(tmp_path))
    first = onnx.exported(default_model_dir(), 2)
    assert first.is_file() and first.is_relative_to(tmp_path / "assets" / "onnx")
    seconds = dict(onnx.EXPORT_SECONDS)
    assert onnx.exported(default_model_dir(), 2) == first and seconds == onnx.EXPORT_SECONDS  # no second export
    assert onnx.exported(default_model_dir(), 1) != first
    assert not list(first.parent.glob(".tmp-*"))


def test_model_hash_is_remembered_until_a_file_changes(tmp_path, monkeypatch):
    import hashlib
    import json
    import os

    from omnitok.embedding import onnx

    monkeypatch.setenv("OMNITOK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(onnx, "SETTLED_NS", 0)  # files written just now: their stat may be kept at once
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"weights" * 1000)

    def truth():
        d = hashlib.sha256()
        for name in ("config.json", "model.safetensors"):
            d.update(name.encode() + b"\0" + (model / name).read_bytes())
        return d.hexdigest()

    first = onnx.model_hash(model)
    assert first == truth()
    (memo,) = (tmp_path / "home" / "assets" / "onnx" / "hashes").glob("*.json")
    assert json.loads(memo.read_text())["sha256"] == first

    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: reads.append(f) or real_open(f, *a, **k))
    assert onnx.model_hash(model) == first and not reads  # answered from the memo
    monkeypatch.setattr("builtins.open", real_open)

    st = (model / "model.safetensors").stat()
    (model / "model.safetensors").write_bytes(b"WEIGHTS" * 1000)  # same size,
    os.utime(model / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: ctime differs
    assert onnx.model_hash(model) == truth() != first

    # a memo that is not what omnitok writes is ignored (and replaced)
    files = json.loads(memo.read_text())["files"]  # this model's stats as they are now
    for bad in (
        "not json",
        "[1, 2]",
        "[" * 100_000,
        '{"files": 3, "sha256": "x"}',
        json.dumps({"files": files, "sha256": "Z" * 64}),
    ):
        memo.write_text(bad)
        assert onnx.model_hash(model) == truth()
        assert json.loads(memo.read_text())["sha256"] == truth()


NQ_STYLE = [
    (
        [
            {"title": "Chicago Bulls", "text": "The Chicago Bulls won the 1998 NBA Finals against the Utah Jazz."},
            {"title": "Utah Jazz", "text": "The Jazz play in Salt Lake City. Their arena opened in 1991."},
            {"title": "Basketball", "text": "Basketball was invented by James Naismith in 1891 in Springfield."},
            {"title": "Baseball", "text": "The New York Yankees won the 1998 World Series in four games."},
        ],
        "who won the nba finals in 1998",
        "Chicago Bulls",
    ),
    (
        [
            {"title": "Mount Everest", "text": "Everest is 8,849 metres high. It lies on the Nepal-China border."},
            {"title": "K2", "text": "K2 is the second-highest mountain. It stands in the Karakoram range."},
            {"title": "Alps", "text": "Mont Blanc is the highest mountain in the Alps at 4,805 metres."},
        ],
        "how tall is the highest mountain on earth",
        "8,849",
    ),
    (
        [
            {"title": "Penicillin", "text": "Alexander Fleming discovered penicillin in 1928 at St Mary's Hospital."},
            {"title": "Insulin", "text": "Insulin was first isolated in 1921 by Banting and Best in Toronto."},
            {"title": "Vaccines", "text": "Edward Jenner developed the smallpox vaccine in 1796."},
        ],
        "who discovered the first antibiotic",
        "Fleming",
    ),
]


@pytest.mark.parametrize("method", ["dense", "combined"])
def test_compress_selects_as_the_torch_path(method):
    torch_comp = Compressor("gpt-4o", method=method, cache="off")
    torch_comp._embedder = LocalEmbedder(precision="fp32")
    torch_comp._embedder.encoder = TorchEncoder(default_model_dir(), None, "cpu")
    fp32 = Compressor("gpt-4o", method=method, cache="off")
    fp32._embedder = LocalEmbedder(precision="fp32")
    int8 = Compressor("gpt-4o", method=method, cache="off")
    int8._embedder = LocalEmbedder(precision="int8")
    for ctx, query, answer in NQ_STYLE:
        for ratio in (0.25, 0.5):
            want = torch_comp.compress(ctx, query, ratio=ratio)
            assert fp32.compress(ctx, query, ratio=ratio).compressed_text == want.compressed_text
            assert (answer in int8.compress(ctx, query, ratio=ratio).compressed_text) == (
                answer in want.compressed_text
            )


def test_auto_is_cpu_here_and_cuda_without_a_gpu_is_exit_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == "cpu"
    omnitok = str(Path(sys.executable).with_name("omnitok"))
    (tmp_path / "ctx.txt").write_text("Some context. Another sentence.")
    (tmp_path / "pairs.jsonl").write_text('{"original": "a b c", "compressed": "a b"}\n')
    for args in (
        ["compress", "--device", "cuda", "--context", str(tmp_path / "ctx.txt"), "--query", "x", "--budget", "3"],
        ["validate", "--device", "cuda", "--metrics", "bertscore", str(tmp_path / "pairs.jsonl")],
    ):
        r = subprocess.run([omnitok, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and "--device cuda" in r.stderr and not r.stdout
    r = subprocess.run(
        [omnitok, "compress", "--device", "gpu", "--context", str(tmp_path / "ctx.txt"), "--budget", "3"],
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--device must be one of auto, cpu, cuda" in r.stderr


def test_a_damaged_cached_export_is_made_again(tmp_path):
    """A cached model.onnx that ONNX Runtime cannot load (cut short, overwritten) was a traceback
    from `omnitok validate`; it is exported again and the run gives the same scores. The home
    starts with a copy of this process's export (the other tests' own: one export less, ~8 s of
    CPU), so the run below exports once, the damaged file."""
    import json
    import os
    import shutil

    from omnitok.embedding.onnx import exported

    omnitok = str(Path(sys.executable).with_name("omnitok"))
    made = exported(default_model_dir(), 6, "fused")  # what `validate --metrics bertscore` loads on a CPU
    shutil.copytree(made.parent, tmp_path / "home" / "assets" / "onnx" / made.parent.name)
    env = {**os.environ, "OMNITOK_HOME": str(tmp_path / "home")}
    args = [omnitok, "validate", "--metrics", "bertscore", "--no-cache", "--format", "jsonl",
            "--original", "The cat sat on the mat near the door.", "--compressed", "cat sat on mat"]  # fmt: skip

    def scores():
        r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        row = json.loads(r.stdout.splitlines()[0])
        return [row[f"bertscore_{k}"] for k in ("precision", "recall", "f1")]

    good = scores()
    (export,) = (tmp_path / "home" / "assets" / "onnx").glob("*/model.onnx")
    size = export.stat().st_size
    export.write_bytes(b"not a model")
    assert scores() == good
    assert export.stat().st_size == size  # made again, whole


def test_an_export_that_cannot_be_loaded_twice_is_an_asset_error(tmp_path, monkeypatch):
    from omnitok.embedding import onnx
    from omnitok.errors import AssetError

    bad = tmp_path / "model.onnx"
    made = []

    def exported(*a, **k):
        made.append(a)
        bad.write_bytes(b"not a model")
        return bad

    monkeypatch.setattr(onnx, "exported", exported)
    with pytest.raises(AssetError, match=r"model\.onnx: ONNX Runtime cannot load this export"):
        onnx.OrtEncoder(default_model_dir(), 1)
    assert len(made) == 2  # tried once more after removing the first
