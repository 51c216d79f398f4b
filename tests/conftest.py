from __future__ import annotations

import io
import os
import signal
import sys
from dataclasses import dataclass

import pytest

# A suite started in the background (`make test &`, a CI runner's non-interactive shell) inherits
# SIGINT ignored, and so does every console script the tests start: Python leaves an ignored SIGINT
# ignored, so the Ctrl-C tests' `omnitok` ran on to exit 0. The tests send their SIGINT as a
# terminal would, to a process that has its ordinary handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
    """The suite's OMNITOK_HOME, unless one is set: a directory of its own for the run, shared by
    the test processes (set here, in the process that starts them), removed at the end. Tests
    that need other homes set theirs; what the rest write there (ONNX exports, ~270 MB; derived
    rank tables) went into the user's own ~/.local/share/omnitok."""
    if "OMNITOK_HOME" in os.environ or hasattr(config, "workerinput"):
        return
    import tempfile

    home = tempfile.mkdtemp(prefix="omnitok-tests-home-")
    os.environ["OMNITOK_HOME"] = home
    config._omnitok_home = home


def pytest_unconfigure(config):
    home = getattr(config, "_omnitok_home", None)
    if home is not None:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
        if os.environ.get("OMNITOK_HOME") == home:
            del os.environ["OMNITOK_HOME"]


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


@pytest.fixture
def pools(monkeypatch):
    """How many shard worker pools were started (so a test knows the shard path ran), in
    the order started, each with its number of jobs."""
    started = []
    from omnitok import pipeline

    real = pipeline._start_shard_pool

    def counting(state, jobs, *rest):
        started.append(jobs)
        return real(state, jobs, *rest)

    monkeypatch.setattr(pipeline, "_start_shard_pool", counting)
    return started


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


@pytest.fixture(scope="session")
def ray_airgap(tmp_path_factory):
    """The Ray workers' environment, air-gapped: an empty OMNITOK_HOME, an empty Hugging Face
    cache, HF_HUB_OFFLINE=1 and no config (tests/test_ray*.py)."""
    base = tmp_path_factory.mktemp("worker-env")
    return {
        "OMNITOK_HOME": str(base / "omnitok-home"),
        "HF_HOME": str(base / "hf"),
        "HF_HUB_OFFLINE": "1",
        "XDG_CONFIG_HOME": str(base / "config"),
        "OMNITOK_LOCAL_MODEL_DIRS": "",
        "TIKTOKEN_CACHE_DIR": str(base / "tiktoken"),
    }


RAY_FILES = ("test_ray.py", "test_ray_runs.py")
_RAY_STARTED: list[bool] = []  # whether this process's Ray is the one ray_cluster started


@pytest.fixture(scope="module")
def ray_cluster(ray_airgap):
    """One local Ray (2 CPUs, a 300 MB object store, the workers air-gapped) for the Ray test files
    (RAY_FILES) a test process runs in a row: started by the first, kept for the next (a Ray start
    is seconds of CPU), stopped after the last (pytest_runtest_teardown below), so that no idle Ray
    runs beside the other files. Both files go to one worker (pytest_xdist_make_scheduler below):
    two clusters side by side on 2 cores slowed every other test more than they gained."""
    ray = pytest.importorskip("ray", reason="omnitok.ray needs Ray Data: pip install 'omnitok[ray]'")
    pytest.importorskip("ray.data", reason="omnitok.ray needs Ray Data: pip install 'omnitok[ray]'")
    if ray.is_initialized() and not _RAY_STARTED:
        ray.shutdown()  # another's Ray: not the air-gapped workers these tests need
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            object_store_memory=300 * 1024 * 1024,
            include_dashboard=False,
            logging_level="warning",
            runtime_env={"env_vars": ray_airgap},
            # Ray starts its workers at nice 15: beside the suite's other test processes (nice 0)
            # they got a few percent of a core, and a worker's ~1 s start took a minute (the first
            # task of a run 61 s under load instead of 1.1 s). At 0 they share the cores fairly.
            # Ray's worker cap stays on: without it the raylet starts a new worker process for
            # every queued task instead of reusing one (28 for one read_parquet of three files).
            _system_config={"worker_niceness": 0},
        )
        _RAY_STARTED[:] = [True]
    yield


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop ray_cluster's Ray after the last test of the Ray files this process runs in a row."""
    if item.path.name in RAY_FILES and (nextitem is None or nextitem.path.name not in RAY_FILES) and _RAY_STARTED:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        _RAY_STARTED.clear()


@pytest.fixture(scope="session")
def ray_data(tmp_path_factory):
    """The corpus of the Ray tests (tests/ray_corpus.py), written once a test process."""
    from tests.ray_corpus import write_corpus

    d = tmp_path_factory.mktemp("data")
    write_corpus(d)
    return d


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


@pytest.hookimpl(optionalhook=True)  # a run without xdist (-p no:xdist) has no such hook
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with the Ray files (RAY_FILES) as one unit: one worker runs them in a row
    on one cluster (ray_cluster)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class RayTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "tests/<ray files>" if scope.rsplit("/", 1)[-1] in RAY_FILES else scope

    return RayTogether(config, log)


# The slowest modules first (tests run in parallel, a module to a worker: `make test`'s -n and
# --dist loadfile), so the long ones do not start last and leave one worker running alone at the end.
SLOW_FIRST = (
    "test_ray.py",
    "test_ray_runs.py",
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
