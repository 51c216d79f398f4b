from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode()

    def jsonl(self) -> list[dict]:
        import orjson

        return [orjson.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture
def cli(monkeypatch):
    """Run `omnitok ARGS` in-process with bytes on stdin; returns exit code, stdout bytes, stderr."""
    from omnitok.cli.app import main

    def run(*args: str, stdin: bytes = b"") -> CliResult:
        out, err = io.BytesIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
        monkeypatch.setattr(sys, "stderr", err)
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        sys.stdout.flush()
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


def reference_encoding(name: str):
    """tiktoken's own definition of an encoding (openai_public), with the rank file read from
    omnitok's embedded copy instead of the network: the reference every count is checked against."""
    import tiktoken
    import tiktoken_ext.openai_public as public

    from omnitok.tokenizers.openai_encodings import ENCODINGS

    spec = ENCODINGS[name]
    import omnitok

    path = str(__import__("pathlib").Path(omnitok.__file__).parent / "assets/data/openai" / f"{spec.file}.tiktoken")
    real_load = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda url, expected_hash=None: real_load(path, expected_hash=expected_hash)
    try:
        kwargs = getattr(public, name)()
    finally:
        public.load_tiktoken_bpe = real_load
    return tiktoken.Encoding(**kwargs)


@pytest.fixture(scope="session")
def ref_o200k():
    return reference_encoding("o200k_base")


@pytest.fixture(scope="session")
def ref_cl100k():
    return reference_encoding("cl100k_base")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own L2 directory and no L3, so no test sees another's cached counts."""
    monkeypatch.setenv("OMNITOK_CACHE_DIR", str(tmp_path / "omnitok-cache"))
    monkeypatch.delenv("L3_CACHE_URL", raising=False)
    monkeypatch.delenv("OMNITOK_L3_SECRET", raising=False)


@pytest.fixture(scope="session")
def gguf_home(tmp_path_factory):
    """gguf_home(name): an OMNITOK_HOME for one GGUF vocabulary, shared by the tests, modules and
    xdist workers of a run, so each file is converted once a run (Gemma 4's takes seconds). One
    home a file: a test can check its file was converted once. Workers converting at once are
    safe: omnitok converts into a temporary directory and renames it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's directory, above the workers' own
    root = base / "gguf-homes"

    def home(name: str) -> str:
        (root / name).mkdir(parents=True, exist_ok=True)
        return str(root / name)

    return home


@pytest.fixture
def warnings_seen():
    """The warnings a library user would see (omnitok.notices), as a list."""
    from omnitok import notices

    seen: list[str] = []
    notices.reset()
    notices.set_handler(seen.append)
    yield seen
    notices.set_handler(None)
    notices.reset()


# The slowest modules first (tests run in parallel, a module to a worker: `make test`'s -n and
# --dist loadfile), so the long ones do not start last and leave one worker running alone at the end.
SLOW_FIRST = (
    "test_ray.py",
    "test_secrets.py",
    "test_onnx_embed.py",
    "test_serve.py",
    "test_tokens_cli.py",
    "test_hf_padding.py",
    "test_gguf.py",
    "test_cpu_work.py",
    "test_shared_state.py",
    "test_bundle.py",
    "test_serve_edge.py",
    "test_cache_safety.py",
    "test_online.py",
    "test_round3_tracebacks.py",
    "test_round3_orphans.py",
    "test_fuzz.py",
    "test_calibrate.py",
    "test_api_contract.py",
    "test_docs_browser.py",
    "test_pre_commit_hook.py",
    "test_action.py",
    "test_readme_commands.py",
    "test_help_and_completion.py",
)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """Keep the assert-rewritten test modules in __pycache__ (git-ignored) even where
    PYTHONDONTWRITEBYTECODE is set: otherwise every worker of every run rewrites them all again,
    ~3.5 s of CPU a worker (`make install` compiles omnitok for the same reason)."""
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        return (yield)
    finally:
        sys.dont_write_bytecode = saved


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))
