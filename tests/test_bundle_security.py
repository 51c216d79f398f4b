"""Bundles against an adversary: fuzzed manifests, the reported exploits, conflicting units,
failures and kills halfway through an install, malformed records, bad numeric options.

Each world is a directory holding the asset store (OMNITOK_HOME), the Hugging Face cache
(HF_HOME), the tiktoken cache (TIKTOKEN_CACHE_DIR) and a sibling "outside"; its full tree
(paths, types, bytes, symlink targets) is compared before and after.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from omnitok.bundle import Recipe, create, inspect, install, installed, verify
from omnitok.bundle.reading import Limits
from omnitok.bundle.sources import BundleError
from omnitok.notices import OmnitokWarning

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- worlds -------------------------------------------------------------------------------------


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its type and bytes (files) or target (links); links not followed."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            mode = os.lstat(p).st_mode
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(mode):
                out[rel] = ("dir",)
            elif stat.S_ISREG(mode):
                out[rel] = ("file", hashlib.sha256(Path(p).read_bytes()).hexdigest())
            else:
                out[rel] = ("other", stat.S_IFMT(mode))
    return out


@contextlib.contextmanager
def world_env(world: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMNITOK_HOME", str(world / "home"))
        mp.setenv("HF_HOME", str(world / "hf"))
        mp.setenv("TIKTOKEN_CACHE_DIR", str(world / "tk"))
        for var in ("HF_HUB_CACHE", "DATA_GYM_CACHE_DIR"):
            mp.delenv(var, raising=False)
        yield


def store_of(world: Path) -> Path:
    return world / "home" / "assets"


def entry(path: str, data: bytes, **extra) -> dict:
    from blake3 import blake3

    return {
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "blake3": blake3(data).hexdigest(),
        **extra,
    }


def pack(path: Path, manifest, members: list[tuple[str, bytes]]) -> str:
    """A gzip tar: manifest.json (an object, dumped, or raw bytes) first, then regular members."""
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
        for name, body in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(body)
            tar.addfile(ti, io.BytesIO(body))
    return str(path)


def legit(name: str, files: dict[str, bytes], revisions: dict | None = None) -> tuple[dict, list]:
    """A well-formed manifest for `files`, and its members."""
    entries = [
        entry(p, d, source=f"test:{p}", revision=None, license="MIT")
        if not p.startswith("hf/")
        else entry(p, d, source=f"hf://{p}", revision="b" * 40, license="Apache-2.0")
        for p, d in sorted(files.items())
    ]
    manifest = {
        "format": "omnitok-bundle",
        "format_version": 1,
        "omnitok_version": "test",
        "name": name,
        "models": {"good/model": sorted(p for p in files if p.startswith("hf/"))},
        "hf_revisions": revisions if revisions is not None else {"good/model": "b" * 40},
        "files": entries,
    }
    return manifest, [("files/" + p, d) for p, d in sorted(files.items())]


BASE_FILES = {
    "tiktoken/test_base.tiktoken": b"not really ranks",  # not a name omnitok pins a hash for
    "hf/good--model/tokenizer.json": b'{"model": {}}',
    "hf/good--model/vocab.json": b"{}",
    "gemini/tok.model": b"spm",
}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A world with one bundle installed into the store and both caches, and an outside."""
    world = tmp_path_factory.mktemp("template")
    (world / "outside").mkdir()
    (world / "outside" / "secret.txt").write_text("keep me")
    manifest, members = legit("base", BASE_FILES)
    bundle = pack(tmp_path_factory.mktemp("in") / "base.tar.gz", manifest, members)
    with world_env(world):
        done = install(bundle, hf_cache=True, tiktoken_cache=True)
    assert done["hf_cache"] and done["tiktoken_cache"]
    assert (world / "hf" / "hub" / "models--good--model" / "refs" / "main").read_text() == "b" * 40
    return world


def fresh(template: Path, where: Path) -> Path:
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(template, where, symlinks=True)
    return where


@pytest.fixture
def world(template, tmp_path, monkeypatch) -> Path:
    w = fresh(template, tmp_path / "world")
    monkeypatch.setenv("OMNITOK_HOME", str(w / "home"))
    monkeypatch.setenv("HF_HOME", str(w / "hf"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(w / "tk"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    return w


def attempt(bundle: str, world: Path, **kw) -> dict | BundleError:
    """Install with both caches; anything but a BundleError fails the test."""
    try:
        return install(bundle, hf_cache=True, tiktoken_cache=True, **kw)
    except BundleError as e:
        return e


def assert_refused(bundle: str, world: Path, field: str | None = None) -> BundleError:
    before = tree(world)
    problems = verify(bundle)
    assert problems, "verify said ok for a bundle install must refuse"
    result = attempt(bundle, world)
    assert isinstance(result, BundleError), result
    assert tree(world) == before
    if field is not None:
        assert f"manifest entry {field}" in str(result) and f"manifest entry {field}" in problems[0]
    return result


# --- the reported exploits ----------------------------------------------------------------------


@pytest.mark.parametrize("rev", ["ABSOLUTE", "../../../x", "../../../outside", "main/../../x", ".hidden", "a/b"])
def test_hf_revision_used_as_a_path_is_refused(world, tmp_path, cli, rev):
    rev = str(world / "outside") if rev == "ABSOLUTE" else rev
    files = {"hf/evil--model/tokenizer.json": b'{"model": {}}'}
    manifest, members = legit("evil", files, {"evil/model": rev})
    bundle = pack(tmp_path / "evil.tar.gz", manifest, members)
    assert_refused(bundle, world, "hf_revisions['evil/model']")
    r = cli("bundle", "verify", bundle)
    assert r.code == 1 and json.loads(r.out)["ok"] is False
    r = cli("bundle", "install", "--hf-cache", bundle)
    assert r.code == 1 and "hf_revisions" in r.err and "Traceback" not in r.err
    assert set(os.listdir(world / "outside")) == {"secret.txt"}


@pytest.mark.parametrize(
    "name", ["../../../../tmp/x/pwned", "../../../outside/pwned", "/tmp/x/pwned", "..", ".", "a/b", "a\x00b", ""]
)
def test_name_used_as_a_path_is_refused(world, tmp_path, name):
    manifest, members = legit(name, {"gemini/x.model": b"x"})
    bundle = pack(tmp_path / "n.tar.gz", manifest, members)
    assert_refused(bundle, world, "name")
    assert not list(Path("/tmp/x").glob("pwned*")) and not list((world / "outside").glob("pwned*"))


def test_create_refuses_an_unsafe_recipe_name(tmp_path):
    with pytest.raises(BundleError, match="bundle name"):
        create(Recipe("../../x", ["gpt-4o"]), str(tmp_path / "x.tar.gz"))
    assert not (tmp_path / "x.tar.gz").exists()


# --- the crashes of item 3 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("hf_revisions", ["good/model"]),
        ("hf_revisions", "b" * 40),
        ("models", [["good/model"]]),
        ("files", {"path": "x"}),
        ("name", 5),
        ("format_version", True),
        ("omnitok_version", {"v": 1}),
    ],
)
def test_wrong_types_refused_naming_the_field(world, tmp_path, field, value):
    manifest, members = legit("t", BASE_FILES)
    manifest[field] = value
    bundle = pack(tmp_path / "t.tar.gz", manifest, members)
    err = assert_refused(bundle, world)
    assert field.replace("format_version", "format version") in str(err)
    with pytest.raises(BundleError):
        inspect(bundle)


@pytest.mark.parametrize(
    "key,value",
    [("source", 5), ("size", True), ("size", -1), ("size", 1.0), ("sha256", "A" * 64), ("blake3", None), ("x", 1)],
)
def test_wrong_entry_types_refused_naming_the_field(world, tmp_path, key, value):
    manifest, members = legit("t", {"gemini/x.model": b"x"})
    manifest["files"][0][key] = value
    bundle = pack(tmp_path / "t.tar.gz", manifest, members)
    err = assert_refused(bundle, world)
    assert "manifest entry files[0]" in str(err) and key in str(err)


class _Tty(io.TextIOWrapper):
    def isatty(self) -> bool:
        return True


def test_inspect_table_on_a_terminal(tmp_path, monkeypatch):
    """The table path (stdout a terminal) shows every field as plain text, markup included, and a
    bundle with odd field types never reaches it."""
    from omnitok.cli.app import main

    def run(*args):
        out, err = io.BytesIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdout", _Tty(out, write_through=True))
        monkeypatch.setattr(sys, "stderr", err)
        monkeypatch.setenv("COLUMNS", "300")
        with pytest.raises(SystemExit) as info:
            main(list(args))
        return info.value.code, out.getvalue().decode(), err.getvalue()

    manifest, members = legit("t", {"gemini/x.model": b"x"})
    manifest["files"][0]["source"] = "[bold red]not markup[/]"
    del manifest["omnitok_version"]
    code, out, err = run("bundle", "inspect", pack(tmp_path / "ok.tar.gz", manifest, members))
    assert code == 0 and "[bold red]not markup[/]" in out and "gemini/x.model" in out, err
    manifest["files"][0]["source"] = 5
    code, out, err = run("bundle", "inspect", pack(tmp_path / "bad.tar.gz", manifest, members))
    assert code == 1 and "files[0].source" in err and "Traceback" not in err and out == ""


def test_file_unit_where_a_directory_is(world, tmp_path):
    store = store_of(world)
    (store / "tiktoken" / "x.tiktoken").mkdir()
    (store / "tiktoken" / "x.tiktoken" / "inner").write_text("mine")
    manifest, members = legit("c", {"tiktoken/a.tiktoken": b"a", "tiktoken/x.tiktoken": b"x"})
    bundle = pack(tmp_path / "c.tar.gz", manifest, members)
    before = tree(world)
    assert verify(bundle) == []  # the bundle is fine: it is this store that conflicts
    err = attempt(bundle, world)
    assert isinstance(err, BundleError) and "'tiktoken/x.tiktoken'" in str(err) and "a directory" in str(err)
    assert tree(world) == before


@pytest.mark.parametrize(
    "blocker,files",
    [
        ("gemini", {"gemini/new.model": b"n"}),  # a file where a directory must be
        ("hf/other--model", {"hf/other--model/tokenizer.json": b"{}"}),  # a file where a model dir goes
    ],
)
def test_directory_unit_where_a_file_is(world, tmp_path, blocker, files):
    target = store_of(world) / blocker
    if target.is_dir():
        shutil.rmtree(target)
    target.write_text("mine")
    manifest, members = legit("c", files, {})
    bundle = pack(tmp_path / "c.tar.gz", manifest, members)
    before = tree(world)
    err = attempt(bundle, world)
    assert isinstance(err, BundleError) and repr(blocker) in str(err)
    assert tree(world) == before


def test_symlinks_on_the_way_are_refused(world, tmp_path):
    """A link in the store or in a cache that leads outside is never written through, and a cache
    conflict is found before the store is touched."""
    store = store_of(world)
    (store / "gemini").rename(world / "outside" / "gemini")
    (store / "gemini").symlink_to(world / "outside" / "gemini")
    manifest, members = legit("s", {"gemini/y.model": b"y"}, {})
    bundle = pack(tmp_path / "s.tar.gz", manifest, members)
    before = tree(world)
    assert isinstance(attempt(bundle, world), BundleError) and tree(world) == before

    snaps = world / "hf" / "hub" / "models--good--model" / "snapshots"
    shutil.rmtree(snaps)
    snaps.symlink_to(world / "outside")
    manifest, members = legit("s", {"hf/good--model/merges.txt": b"m"})
    bundle = pack(tmp_path / "h.tar.gz", manifest, members)
    before = tree(world)
    err = attempt(bundle, world)
    assert isinstance(err, BundleError) and "Hugging Face cache" in str(err)
    assert tree(world) == before


# --- failures and kills halfway -------------------------------------------------------------------

UPDATE = {
    "hf/good--model/tokenizer.json": b'{"model": {"new": 1}}',  # a model dir that replaces one
    "tiktoken/test_base.tiktoken": b"new ranks",  # a file that replaces one
    "hf/new--model/tokenizer.json": b"{}",  # a new directory
}


def _counting(monkeypatch, fail_at: int | None = None, persistent: bool = False, exc=None):
    calls = [0]
    real = {"rename": os.rename, "replace": os.replace}

    def wrap(name):
        def f(*args, **kwargs):
            calls[0] += 1
            if fail_at is not None and (calls[0] == fail_at or (persistent and calls[0] > fail_at)):
                raise exc() if exc else OSError(28, "No space left on device (injected)")
            return real[name](*args, **kwargs)

        return f

    monkeypatch.setattr(os, "rename", wrap("rename"))
    monkeypatch.setattr(os, "replace", wrap("replace"))
    return calls


def test_failure_at_every_move_leaves_the_store_as_it_was(template, tmp_path, monkeypatch):
    manifest, members = legit("u", UPDATE)
    bundle = pack(tmp_path / "u.tar.gz", manifest, members)
    with world_env(fresh(template, tmp_path / "w")), monkeypatch.context() as mp:
        calls = _counting(mp)
        install(bundle, store=store_of(tmp_path / "w"))
    moves = calls[0]
    assert moves >= 5
    for n in range(1, moves + 1):
        w = fresh(template, tmp_path / "w")
        before = tree(w)
        with world_env(w), monkeypatch.context() as mp:
            _counting(mp, fail_at=n)
            with pytest.raises(BundleError, match="rolled back"):
                install(bundle, store=store_of(w))
        assert tree(w) == before, f"failure at move {n}"
    w = fresh(template, tmp_path / "w")
    before = tree(w)
    with world_env(w), monkeypatch.context() as mp:
        _counting(mp, fail_at=moves // 2, exc=KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            install(bundle, store=store_of(w))
    assert tree(w) == before


def test_a_rollback_that_fails_is_finished_by_the_next_install(template, tmp_path, monkeypatch):
    manifest, members = legit("u", UPDATE)
    bundle = pack(tmp_path / "u.tar.gz", manifest, members)
    w = fresh(template, tmp_path / "w")
    before = tree(w)
    with world_env(w), monkeypatch.context() as mp:
        _counting(mp, fail_at=4, persistent=True)  # the disk stays broken: the rollback fails too
        with pytest.raises(BundleError, match="so did its rollback"):
            install(bundle, store=store_of(w))
    assert tree(w) != before
    bad = pack(tmp_path / "bad.tar.gz", *_hash_mismatch())
    with world_env(w), pytest.raises(BundleError, match="hash mismatch"):
        install(bad)
    assert tree(w) == before


def _hash_mismatch():
    manifest, members = legit("m", {"gemini/m.model": b"m"})
    return manifest, [(members[0][0], b"M")]


KILL = """
import os, shutil, sys
from omnitok.bundle import install
n, calls = int(sys.argv[2]), [0]
def wrap(real):
    def f(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            os._exit(137)
        return real(*a, **k)
    return f
os.rename, os.replace = wrap(os.rename), wrap(os.replace)
if n == 0:
    shutil.rmtree = lambda *a, **k: os._exit(137)  # killed while cleaning up after the commit
install(sys.argv[1], store=sys.argv[3])
"""


def test_killed_install_is_rolled_back_by_the_next(template, tmp_path, monkeypatch):
    manifest, members = legit("u", UPDATE)
    bundle = pack(tmp_path / "u.tar.gz", manifest, members)
    other_manifest, other_members = legit("o", {"gemini/o.model": b"o"}, {})
    other = pack(tmp_path / "o.tar.gz", other_manifest, other_members)
    with world_env(fresh(template, tmp_path / "w")), monkeypatch.context() as mp:
        calls = _counting(mp)
        install(bundle, store=store_of(tmp_path / "w"))
    moves = calls[0]

    def expected(first: bool) -> dict:
        w = fresh(template, tmp_path / "expected")
        with world_env(w):
            if first:
                install(bundle)
            install(other)
        return tree(w)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for n, committed in [(1, False), (moves // 2, False), (moves, False), (0, True)]:
        w = fresh(template, tmp_path / "w")
        r = subprocess.run(
            [sys.executable, "-c", KILL, bundle, str(n), str(store_of(w))], env=env, capture_output=True, cwd=tmp_path
        )
        assert r.returncode == 137, r.stderr.decode()[-2000:]
        assert [p for p in os.listdir(store_of(w)) if p.startswith(".staging-")], "the kill left nothing to recover"
        with world_env(w):
            install(other)
        assert not [p for p in os.listdir(store_of(w)) if p.startswith((".staging-", ".old-"))]
        assert tree(w) == expected(committed), f"killed at move {n}"


def test_stale_staging_is_removed_by_the_next_install(world, tmp_path):
    store = store_of(world)
    stale = store / ".staging-0123456789abcdef"
    (stale / "new" / "tiktoken").mkdir(parents=True)
    with open(stale / "new" / "tiktoken" / "big.tiktoken", "wb") as f:
        f.truncate(50 << 20)
    (store / ".old-deadbeef" / "x").mkdir(parents=True)
    manifest, members = legit("ok", {"gemini/ok.model": b"ok"}, {})
    install(pack(tmp_path / "ok.tar.gz", manifest, members))
    assert not stale.exists() and not (store / ".old-deadbeef").exists()
    assert (store / "gemini" / "ok.model").read_bytes() == b"ok"


# --- records in the store -------------------------------------------------------------------------


def test_malformed_records_are_skipped_with_a_warning(world, cli, monkeypatch):
    from omnitok import notices

    notices.reset()
    monkeypatch.setattr(notices, "_handler", None)  # Python warnings, as a library user gets them
    records = store_of(world) / "bundles"
    (records / "list-000.json").write_text("[1,2,3]")
    (records / "types-000.json").write_text(json.dumps({"name": 5, "files": 3}))
    (records / "binary-000.json").write_bytes(b"\xff\xfe\x00garbage")
    (records / "link-000.json").symlink_to("/dev/zero")
    os.mkfifo(records / "fifo-000.json")
    with open(records / "huge-000.json", "wb") as f:
        f.truncate(65 << 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = installed()
    assert [r["name"] for r in rows] == ["base"]
    assert len([w for w in caught if issubclass(w.category, OmnitokWarning)]) == 6
    r = cli("bundle", "list")
    assert r.code == 0 and [row["name"] for row in r.jsonl()] == ["base"]
    assert r.err.count("omnitok: warning: skipping the malformed bundle record") == 6 and "Traceback" not in r.err


# --- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option,value",
    [("--max-member-mb", "nan"), ("--max-member-mb", "inf"), ("--max-member-mb", "-1"), ("--max-total-mb", "0")],
)
def test_bad_numeric_options_are_usage_errors(tmp_path, option, value):
    exe = Path(sys.executable).parent / "omnitok"
    r = subprocess.run([str(exe), "bundle", "install", option, value, "x.tar.gz"], capture_output=True, cwd=tmp_path)
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and option in err and value in err


def test_bad_compression_is_a_usage_error_before_any_download(tmp_path, cli):
    r = cli("bundle", "create", "--models", "gpt-4o", "--compression", "bogus", "-o", str(tmp_path / "x.tar.gz"))
    assert r.code == 2 and "--compression must be gzip, zstd or none" in r.err and "gathering" not in r.err


def test_verify_and_inspect_of_a_missing_file(tmp_path, cli):
    r = cli("bundle", "verify", str(tmp_path / "nope.tar.gz"))
    assert r.code == 1 and json.loads(r.out)["ok"] is False
    r = cli("bundle", "inspect", str(tmp_path / "nope.tar.gz"))
    assert r.code == 1 and "cannot read the bundle" in r.err


# --- raw manifests and damaged archives ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"format": "omnitok-bundle", "format": "omnitok-bundle", "format_version": 1, "name": "a", "files": []}',
        b'{"format": "omnitok-bundle", "format_version": 1, "name": "a", "files": [{"path": "a", "size": NaN,'
        b' "sha256": "0"}]}',
        b'{"format": "omnitok-bundle", "format_version": 1, "name": "a", "files": [{"path": "a", "size": '
        + b"9" * 5000
        + b', "sha256": "0"}]}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe\xfa",
        b"",
        b"null",
        b'"omnitok-bundle"',
        b'{"format": "omnitok-bundle", "format_version": 1, "name": "a", "files": [], "models": {"\\ud800": []}}',
    ],
    ids=["duplicate-key", "nan", "huge-int", "deep", "not-utf8", "empty", "null", "string", "surrogate"],
)
def test_raw_manifests_refused(world, tmp_path, raw):
    bundle = pack(tmp_path / "raw.tar.gz", raw, [])
    with pytest.raises(BundleError):
        inspect(bundle)
    assert_refused(bundle, world)


@FUZZ
@given(data=st.data())
def test_damaged_archives(template, tmp_path, data):
    manifest, members = legit("d", UPDATE)
    blob = Path(pack(tmp_path / "d.tar.gz", manifest, members)).read_bytes()
    kind = data.draw(st.sampled_from(["gzip", "tar", "zstd"]), label="compression")
    if kind == "tar":
        blob = gzip.decompress(blob)
    elif kind == "zstd":
        with contextlib.suppress(ImportError):  # an optional extra: gzip again without it
            import zstandard

            blob = zstandard.ZstdCompressor().compress(gzip.decompress(blob))
    raw = bytearray(blob)
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="at")]
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        if raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    bundle = tmp_path / "damaged.tar.gz"
    bundle.write_bytes(bytes(raw))
    w = fresh(template, tmp_path / "w")
    before = tree(w)
    with world_env(w):
        problems = verify(str(bundle))
        result = attempt(str(bundle), w)
    if isinstance(result, BundleError):
        assert tree(w) == before
    else:
        assert problems == []


# --- fuzzed manifests ---------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, -1, 1 << 40, (1 << 40) + 1, 1 << 63, 10**100]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
NASTY_TEXT = [
    "",
    ".",
    "..",
    "../x",
    "../../outside/pwned",
    "../../../outside/pwned",
    "../../../../outside/pwned",
    "a/../../b",
    "a/./b",
    "a//b",
    "a/",
    "/etc/cron.d/job",
    "/",
    "~",
    "~/x",
    "C:\\x",
    "..\\..\\x",
    "a\x00b",
    "\x00",
    "x" * 300,
    "x" * 5000,
    "\u202eevil",
    "\x1b[31mred",
    "[bold]markup[/]",
    "\ud800",
    "hf",
    "hf/x",
    "hf/a--b--c/x",
    "hf/../x/y",
    "hf/good--model",
    "hf/good--model/tokenizer.json/x",
    "hf/-bad--model/x",
    "bundles/base-000000000000.json",
    ".staging-x",
    ".lock",
    "tiktoken/o200k_base.tiktoken",
    "tiktoken",
    "good/model",
    "evil/model",
    "../evil/model",
    "a" * 40,
    "A" * 64,
    "0" * 64,
    "main",
    "refs/pr/1",
    "-rf",
]


def nasty(outside: Path):
    absolute = st.sampled_from([str(outside), str(outside / "pwned"), str(outside.parent), "/tmp/x/pwned"])
    text = st.one_of(st.sampled_from(NASTY_TEXT), absolute)
    leaf = st.one_of(SCALARS, text)
    return st.one_of(
        leaf,
        text,
        st.lists(leaf, max_size=3),
        st.dictionaries(st.one_of(text, st.text(max_size=5)), leaf, max_size=3),
    )


def mutate(data, manifest: dict, members: list, outside: Path):
    """One to three changes anywhere in the manifest; a renamed path renames its member too."""
    value = nasty(outside)
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        if type(manifest) is not dict:
            break
        where = data.draw(
            st.sampled_from(["top", "top-del", "top-new", "whole", "entry", "entry-del", "entry-new", "file", "map"]),
            label="where",
        )
        files = manifest.get("files")
        has_entries = type(files) is list and files and all(type(e) is dict for e in files)
        if where == "whole":
            return data.draw(value, label="manifest"), members
        if where in ("top", "top-del"):
            key = data.draw(st.sampled_from(sorted(manifest)), label="key")
            if where == "top-del":
                del manifest[key]
            else:
                manifest[key] = data.draw(value, label="value")
        elif where == "top-new":
            manifest[data.draw(st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=8)))] = data.draw(value)
        elif where.startswith("entry") and has_entries:
            i = data.draw(st.integers(0, len(files) - 1), label="entry")
            e = files[i]
            key = data.draw(st.sampled_from(sorted(e) + ["path", "size", "sha256"]), label="entry key")
            if where == "entry-del":
                e.pop(key, None)
            elif where == "entry-new":
                e[data.draw(st.text(max_size=8))] = data.draw(value)
            else:
                new = data.draw(value, label="entry value")
                # (an entry a "file" change made has no path yet: no member to rename)
                renames = key == "path" and "path" in e and type(new) is str
                if renames and data.draw(st.booleans(), label="rename member"):
                    old = "files/" + str(e["path"])
                    members = [("files/" + new if n == old else n, d) for n, d in members]
                e[key] = new
        elif where == "file" and type(files) is list and files:
            files[data.draw(st.integers(0, len(files) - 1))] = data.draw(value)
        elif where == "map":
            which = data.draw(st.sampled_from(["models", "hf_revisions"]), label="map")
            target = manifest.get(which)
            if type(target) is dict:
                key = data.draw(
                    st.one_of(st.sampled_from(sorted(target) or ["good/model"]), st.sampled_from(NASTY_TEXT))
                )
                target[key] = data.draw(value, label="map value")
    return manifest, members


def try_pack(path: Path, manifest, members) -> str | None:
    try:
        data = json.dumps(manifest).encode()
    except (ValueError, TypeError, UnicodeEncodeError):
        return None
    try:
        return pack(path, data, members)
    except (ValueError, UnicodeEncodeError, tarfile.TarError):
        return pack(path, data, [])


@FUZZ
@given(data=st.data())
def test_fuzzed_manifests(template, tmp_path, data):
    w = fresh(template, tmp_path / "w")
    manifest, members = legit("fuzz", UPDATE | {"hf/evil--model/tokenizer.json": b"job"}, {"good/model": "c" * 40})
    manifest, members = mutate(data, manifest, members, w / "outside")
    bundle = try_pack(tmp_path / "fuzz.tar.gz", manifest, members)
    if bundle is None:
        return
    before = tree(w)
    with world_env(w):
        try:
            inspected = inspect(bundle)
        except BundleError:
            inspected = None
        problems = verify(bundle)
        assert isinstance(problems, list) and all(type(p) is str for p in problems)
        result = attempt(bundle, w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OmnitokWarning)
            rows = installed()
    assert all(type(r["name"]) is str and type(r["files"]) is int for r in rows)
    after = tree(w)
    event("refused" if isinstance(result, BundleError) else "accepted")
    if isinstance(result, BundleError):
        assert after == before, str(result)
        return
    # Accepted: then it was well-formed all along, and only the store and the caches changed.
    assert inspected is not None and problems == []
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert all(p.split(os.sep)[0] in ("home", "hf", "tk") for p in changed), sorted(changed)
    assert {p: v for p, v in after.items() if p.startswith("outside")} == {
        p: v for p, v in before.items() if p.startswith("outside")
    }
    assert not [p for p in os.listdir(store_of(w)) if p.startswith(".staging-")]


def test_limits_still_apply_to_legit_bundles(world, tmp_path):
    manifest, members = legit("big", {"gemini/big.model": b"y" * 5000}, {})
    bundle = pack(tmp_path / "big.tar.gz", manifest, members)
    before = tree(world)
    with pytest.raises(BundleError, match="over the member limit"):
        install(bundle, Limits(max_member_bytes=4096))
    assert tree(world) == before


# --- places a bundle may not fill; metadata bombs; create's output ---------------------------


@pytest.mark.parametrize(
    "path",
    [
        # omnitok's own cache of a rank file, trusted by a hash it carries: a bundle forging one
        # changed gpt-4o's counts (11 -> 13 tokens on a test text) while still "exact"
        "derived/o200k_base-446a9538cb6c348e-m4.ranks",
        "onnx/model.onnx",
        "gguf/x.gguf",
        "hf/good--model/model.safetensors",  # weights: never
        "hf/good--model/modeling_evil.py",  # code transformers may run: never
        "hf/good--model/sub/tokenizer.json",
        "tiktoken/sub/o200k_base.tiktoken",
        "calibrations/a/b.json",
    ],
)
def test_a_bundle_fills_only_the_places_counting_reads_from_it(world, tmp_path, path):
    manifest, members = legit("p", {path: b"forged"}, {})
    bundle = pack(tmp_path / "p.tar.gz", manifest, members)
    err = assert_refused(bundle, world, "files[0].path")
    assert "unsafe path" in str(err)


def _metadata_bomb(path: Path, kind: bytes, size: int) -> str:
    """A gzip tar whose first header is a GNU long name (kind b"L") or a pax header (b"x") of
    `size` bytes, then a tiny regular member: a few KB on disk."""
    head = tarfile.TarInfo("././@LongLink" if kind == b"L" else "././@PaxHeader")
    head.size, head.type = size, kind
    body = b"a" * size if kind == b"L" else (b"%d comment=%s\n" % (size, b"c" * (size - 20))).ljust(size, b"c")
    member = tarfile.TarInfo("manifest.json")
    raw = head.tobuf(format=tarfile.USTAR_FORMAT) + body + b"\0" * (-size % 512)
    raw += member.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 1024
    path.write_bytes(gzip.compress(raw))
    return str(path)


@pytest.mark.parametrize("kind,what", [(b"L", "GNU long name"), (b"x", "pax")])
def test_a_metadata_header_over_its_bound_is_refused_before_it_is_read(world, tmp_path, cli, kind, what):
    """tarfile reads a long-name or pax header's data whole before any member limit applies: a
    204 KB gzip held a 200 MB name, ~1 GB of memory for inspect, verify or install, and the name
    came back whole in the error (200 MB on stderr)."""
    from omnitok.bundle.reading import MAX_HEADER_BYTES

    bundle = _metadata_bomb(tmp_path / "bomb.tar.gz", kind, 4 * MAX_HEADER_BYTES)
    before = tree(world)
    for command in ("inspect", "verify", "install"):
        r = cli("bundle", command, bundle)
        assert r.code == 1, (command, r.err)
        said = r.err + r.text
        assert f"a {what} header of {4 * MAX_HEADER_BYTES} bytes" in said and len(said) < 600, (command, said[:300])
    assert tree(world) == before


def test_create_never_writes_over_an_input_or_through_a_stale_name(tmp_path, cli):
    """`bundle create -o` wrote DIR.part then renamed it: -o naming a --local input replaced that
    input with the bundle, and a user's own OUT.part (or a link there) was overwritten. It now
    writes as every -o does (omnitok.io.output): a temporary name of its own, an input refused."""
    local = tmp_path / "m"
    local.mkdir()
    (local / "tokenizer.json").write_text('{"model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}')
    config = local / "tokenizer_config.json"
    config.write_text('{"model_max_length": 8}')
    before = config.read_bytes()
    r = cli("bundle", "create", "--models", "good/model", "--local", f"good/model={local}", "-o", str(config))
    assert r.code == 2 and "is also an input" in r.err and "Traceback" not in r.err, r.err
    assert config.read_bytes() == before
    (tmp_path / "out.tar.gz.part").write_text("mine")
    (tmp_path / "precious").write_text("precious")
    (tmp_path / "o2.tar.gz.part").symlink_to(tmp_path / "precious")
    for name in ("out.tar.gz", "o2.tar.gz"):
        r = cli(
            "bundle", "create", "--models", "good/model", "--local", f"good/model={local}", "-o", str(tmp_path / name)
        )
        assert r.code == 0, r.err
        assert verify(str(tmp_path / name)) == [] and not (tmp_path / name).is_symlink()
    assert (tmp_path / "out.tar.gz.part").read_text() == "mine" and (tmp_path / "precious").read_text() == "precious"
    for where, why in ((tmp_path, "it is a directory"), (tmp_path / "no" / "x.tar.gz", "No such file or directory")):
        r = cli("bundle", "create", "--models", "good/model", "--local", f"good/model={local}", "-o", str(where))
        assert r.code == 2 and why in r.err and "Traceback" not in r.err, r.err


def test_a_killed_install_is_rolled_back_by_the_next_reader_too(template, tmp_path, monkeypatch):
    """Killed between its moves, an install left half of its bundle in place (or a model moved
    aside) and `count` used that state until the next install: an adversarial run counted with
    the half-installed tokenizer (39 tokens where 11). A reader of the store now settles it first
    (omnitok.assets.transactions.settled), once a process, when no install holds the lock."""
    manifest, members = legit("u", UPDATE)
    bundle = pack(tmp_path / "u.tar.gz", manifest, members)
    w = fresh(template, tmp_path / "w")
    with world_env(w), monkeypatch.context() as mp:
        calls = _counting(mp)
        install(bundle, store=store_of(w))
    moves, whole = calls[0], tree(w)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    read = "from omnitok.assets.store import asset_store; asset_store()"
    for n, committed in [(1, False), (moves // 2, False), (moves, False), (0, True)]:
        w = fresh(template, tmp_path / "w")
        before = tree(w)
        r = subprocess.run(
            [sys.executable, "-c", KILL, bundle, str(n), str(store_of(w))], env=env, capture_output=True, cwd=tmp_path
        )
        assert r.returncode == 137, r.stderr.decode()[-2000:]
        assert [p for p in os.listdir(store_of(w)) if p.startswith(".staging-")], "the kill left nothing to recover"
        r = subprocess.run(
            [sys.executable, "-c", read], env={**env, "OMNITOK_HOME": str(w / "home")}, capture_output=True
        )
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        assert tree(w) == (whole if committed else before), f"killed at move {n}"


def test_a_chain_of_extended_headers_is_refused_not_a_recursion_error(world, tmp_path, cli):
    """tarfile takes each pax or long-name header by recursion: 3,000 small chained global pax
    headers (a 3 KB gzip) were a RecursionError traceback from inspect, verify and install."""
    raw = b""
    for _ in range(3000):
        head = tarfile.TarInfo("././@PaxHeader")
        body = b"10 a=bcde\n"
        head.size, head.type = len(body), tarfile.XGLTYPE
        raw += head.tobuf(format=tarfile.USTAR_FORMAT) + body + b"\0" * (-len(body) % 512)
    raw += tarfile.TarInfo("manifest.json").tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 1024
    bundle = tmp_path / "chain.tar.gz"
    bundle.write_bytes(gzip.compress(raw))
    before = tree(world)
    for command in ("inspect", "verify", "install"):
        r = cli("bundle", command, str(bundle))
        said = r.err + r.text
        assert r.code == 1 and "more than 8 extended headers in a row" in said and "Traceback" not in said, said[:500]
    assert tree(world) == before
