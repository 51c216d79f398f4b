"""Issue 23, items 7 and 8: shared state is checked before use. A count written into Redis (L3)
by hand or edited in the L2 database is never served; with a secret, only values tagged under it
are; after Redis restarts the server writes L3 again within 5 s; a swapped ONNX export is
exported again. Through a real `omnitok serve` and the console script."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sqlite3
import time
import warnings
from pathlib import Path
from unittest import mock

import orjson
import pytest

import omnitok
from omnitok.cache import CacheSettings
from omnitok.errors import EXIT_GATE_FAILED, EXIT_USAGE
from tests.console import omnitok as run
from tests.redis_server import RedisServer
from tests.serve_server import ModuleClient, Server

SECRET = "l3-secret-" + "7f3a9c" * 6  # what the operator configured
OTHER_SECRET = "someone-else-" + "0" * 20
PREFIX = "omnitok:v1:"
NO_SECRET = {"OMNITOK_L3_SECRET": ""}  # whatever the developer's environment says
# every count through the cache, and no L2: every miss in L1 asks L3; one CPU worker, not one a
# core (~0.2 s of CPU each to start): /validate and /compress, all they run, are not used here
SERVE = ("--cache", "on", "--cache-dir", "none", "--cpu-workers", "1")


@functools.cache
def _keys() -> omnitok.Cache:
    return omnitok.Cache(CacheSettings(directory=None))


def key(text: str) -> str:
    """The Redis key a server counting gpt-4o with --cache on keeps `text`'s count under."""
    return PREFIX + _keys().key("gpt-4o", text)


def truth(text: str) -> int:
    return omnitok.count(text, "gpt-4o").tokens


http = ModuleClient(timeout=30)
_close_http = http.closing()


def count(server: Server, text: str) -> dict:
    r = http().post(f"{server.url}/count-tokens", json={"text": text, "model_id": "gpt-4o"})
    assert r.status_code == 200, r.text
    return r.json()


def cache_stats(server: Server) -> dict:
    r = http().get(f"{server.url}/cache/stats")
    assert r.status_code == 200, r.text
    return r.json()["stats"]


def restarted(redis: RedisServer, workdir: Path) -> RedisServer:
    """The same redis-server port, a fresh (empty) server: as after a restart."""
    redis.stop()
    with mock.patch("tests.redis_server.free_port", lambda: redis.port):
        return RedisServer(workdir)


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory, redis_srv):
    """A server with L3 (database 0) and no secret."""
    srv = Server(tmp_path_factory.mktemp("plain"), *SERVE, "--l3-url", redis_srv.url, env=NO_SECRET)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def signed(tmp_path_factory, redis_srv):
    """A server with L3 (database 1) whose values are tagged with SECRET, read from [cache]
    l3_secret_file."""
    tmp = tmp_path_factory.mktemp("signed")
    (tmp / "l3.secret").write_text(SECRET + "\n")
    (tmp / "config.toml").write_text(f'[cache]\nl3_secret_file = "{tmp / "l3.secret"}"\n')
    url = redis_srv.url[: -len("/0")] + "/1"
    srv = Server(tmp, *SERVE, "--l3-url", url, env={**NO_SECRET, "OMNITOK_CONFIG": str(tmp / "config.toml")})
    srv.l3_url = url
    yield srv
    srv.stop()


# --- L3 without a secret: type and range ------------------------------------------------------


def test_without_a_secret_only_counts_in_range_are_read(plain, redis_srv):
    client = redis_srv.client()
    # what the README says: without a secret, whoever can write to Redis can change counts in range
    client.set(key("plain in range"), str(truth("plain in range") + 100))
    assert count(plain, "plain in range")["token_count"] == truth("plain in range") + 100
    before = cache_stats(plain)
    bad = {"plain huge": "10000000000001", "plain negative": "-3", "plain float": "12.5", "plain exp": "1e3"}
    bad["plain text"] = "abc"
    for text, value in bad.items():
        client.set(key(text), value)
    client.hset(key("plain hash"), "a", "1")
    for text in [*bad, "plain hash"]:
        got = count(plain, text)
        assert (got["token_count"], got["is_exact"]) == (truth(text), True), text
    after = cache_stats(plain)
    assert after["malformed"] - before["malformed"] == len(bad) + 1
    assert after["l3_hits"] == before["l3_hits"]
    assert client.get(key("plain huge")) == str(truth("plain huge")).encode()  # recounted, stored over


# --- L3 with a secret: tags ---------------------------------------------------------------------


def test_with_a_secret_only_values_tagged_for_their_key_are_read(signed, redis_srv):
    import redis as redis_py  # here, not where every test process collects the module (~70 ms)

    client = redis_py.Redis.from_url(signed.l3_url)
    writer = omnitok.Cache(CacheSettings(directory=None, l3_url=signed.l3_url, l3_secret=SECRET))
    forger = omnitok.Cache(CacheSettings(directory=None, l3_url=signed.l3_url, l3_secret=OTHER_SECRET))
    # a value tagged under the secret is read (so the refusals below are the tags' doing)
    writer.set(key("signed a")[len(PREFIX) :], 4242)
    tagged = client.get(key("signed a"))
    assert tagged.startswith(b"h1:") and tagged.endswith(b":4242") and SECRET.encode() not in tagged
    before = cache_stats(signed)
    assert count(signed, "signed a")["token_count"] == 4242
    assert cache_stats(signed)["l3_hits"] == before["l3_hits"] + 1

    writer.set(key("signed edited")[len(PREFIX) :], truth("signed edited"))
    value = client.get(key("signed edited"))
    client.set(key("signed edited"), value[: value.rindex(b":") + 1] + b"999")  # the count edited, tag kept
    client.set(key("signed moved"), tagged)  # a valid value under another key
    client.set(key("signed untagged"), str(truth("signed untagged") + 9))
    forger.set(key("signed other secret")[len(PREFIX) :], truth("signed other secret") + 1)
    writer.close()
    forger.close()
    refused = ["signed edited", "signed moved", "signed untagged", "signed other secret"]
    before = cache_stats(signed)
    for text in refused:
        got = count(signed, text)
        assert (got["token_count"], got["is_exact"]) == (truth(text), True), text
    after = cache_stats(signed)
    assert after["tier_errors"]["l3"] - before["tier_errors"]["l3"] == len(refused)
    assert after["l3_hits"] == before["l3_hits"] and after["malformed"] == before["malformed"]
    for text in refused:  # recounted and stored over, tagged
        assert client.get(key(text)).endswith(b":" + str(truth(text)).encode())
        assert client.get(key(text)).startswith(b"h1:")
    # the environment's secret is the same secret: the console script reads what the server wrote
    r = run("count", "-m", "gpt-4o", "--cache", "on", "--cache-dir", "none", "--l3-url", signed.l3_url,
            "--summary", "-o", "/dev/null", stdin=orjson.dumps({"text": "signed moved"}),
            env={"OMNITOK_L3_SECRET": SECRET})  # fmt: skip
    assert r.code == 0, r.err
    assert orjson.loads(r.out)["cache"]["l3_hits"] == 1


def test_the_secret_is_never_shown(signed, tmp_path):
    seen = [signed.log()]
    for path in ("/cache/stats", "/stats", "/readyz", "/healthz", "/metrics"):
        seen.append(http().get(f"{signed.url}{path}").text)
    r = run("cache", "stats", "--json", "--l3-url", signed.l3_url, env={"OMNITOK_L3_SECRET": SECRET})
    assert r.code == 0, r.err
    seen += [r.out.decode(), r.err]
    settings = CacheSettings(directory=None, l3_url=signed.l3_url, l3_secret=SECRET)
    seen += [repr(settings), repr(omnitok.Cache(settings)), str(settings)]
    assert "l3_secret='***'" in repr(settings)
    for text in seen:
        assert SECRET not in text and SECRET[10:26] not in text
    # a secret too short, or a file that cannot be read: exit 2, the value never echoed
    r = run("count", "-m", "gpt-4o", "--cache", "on", "--l3-url", signed.l3_url, stdin=b'"x"\n',
            env={"OMNITOK_L3_SECRET": "hunter2-hunter2"})  # fmt: skip
    assert r.code == EXIT_USAGE and "OMNITOK_L3_SECRET: must be one line of 16" in r.err
    assert "hunter2" not in r.err and r.err.count("\n") <= 2
    (tmp_path / "config.toml").write_text(f'[cache]\nl3_secret_file = "{tmp_path / "missing"}"\n')
    env = {**NO_SECRET, "OMNITOK_CONFIG": str(tmp_path / "config.toml")}
    r = run("count", "-m", "gpt-4o", "--cache", "on", stdin=b'"x"\n', env=env)
    assert r.code == EXIT_USAGE and "[cache] l3_secret_file: must name a readable file" in r.err, r.err


# --- L3 reconnects --------------------------------------------------------------------------------


def test_after_a_redis_restart_the_server_writes_l3_again_within_5_s(tmp_path):
    redis = RedisServer(tmp_path)
    srv = Server(tmp_path, *SERVE, "--l3-url", redis.url, env=NO_SECRET)
    try:
        assert count(srv, "before the restart")["token_count"] == truth("before the restart")
        assert redis.client().exists(key("before the restart"))
        redis.stop()
        for i in range(3):  # Redis is down: counted all the same
            assert count(srv, f"while down {i}")["token_count"] == truth(f"while down {i}")
        redis = restarted(redis, tmp_path)
        start = time.monotonic()
        client, i = redis.client(), 0
        while time.monotonic() - start < 15:
            text = f"after the restart {i}"
            assert count(srv, text)["token_count"] == truth(text)
            if client.exists(key(text)):
                break
            i += 1
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        print(f"L3 writes resumed {elapsed:.2f} s after the restart ({i + 1} requests)")
        assert client.exists(key(f"after the restart {i}")), "L3 was never written again"
        assert elapsed < 5
        assert cache_stats(srv)["tier_errors"]["l3"] >= 1
    finally:
        srv.stop()
        redis.stop()


def test_l3_unreachable_at_start_is_used_once_it_answers(tmp_path):
    from omnitok.cache import TieredCache
    from omnitok.notices import OmnitokWarning
    from tests.redis_server import free_port

    port = free_port()
    # A write while the server is still starting may warn that L3 is unreachable (the tier's own
    # notice, as at start): that one warning, and no other.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cache = TieredCache(CacheSettings(None, l3_url=f"redis://127.0.0.1:{port}/0", l3_timeout=0.5))
        assert not cache.l3_in_use()
        with mock.patch("tests.redis_server.free_port", lambda: port):
            redis = RedisServer(tmp_path)
        try:
            start = time.monotonic()
            while not redis.client().exists(PREFIX + "t:k") and time.monotonic() - start < 10:
                cache.set_many({"t:k": 5})
                time.sleep(0.05)
            assert redis.client().get(PREFIX + "t:k") == b"5" and time.monotonic() - start < 5
        finally:
            cache.close()
            redis.stop()
    for w in seen:
        assert w.category is OmnitokWarning and f"L3 cache redis://127.0.0.1:{port}/0 unreachable" in str(w.message)


# --- L2: a checksum per entry ---------------------------------------------------------------------


def test_an_l2_entry_edited_in_the_database_is_recounted(tmp_path):
    texts = ["an l2 entry to edit", "an l2 entry to move", "an l2 entry replaced by a number", "an l2 entry kept"]
    (tmp_path / "in.jsonl").write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts))
    args = ["count", "-m", "gpt-4o", "--cache", "on", "--cache-dir", str(tmp_path / "l2"), str(tmp_path / "in.jsonl")]
    r = run(*args)
    assert r.code == 0, r.err
    want = [truth(t) for t in texts]
    assert [row["tokens"] for row in map(orjson.loads, r.out.splitlines())] == want
    keys = [key(t)[len(PREFIX) :] for t in texts]
    db = sqlite3.connect(tmp_path / "l2" / "cache.db")
    with db:
        (edited,) = db.execute("SELECT value FROM Cache WHERE key = ?", (keys[0],)).fetchone()
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", (edited[:-1] + "9", keys[0]))  # the count
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", (edited, keys[1]))  # another key's entry
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", (999, keys[2]))  # a bare number
    db.close()
    r = run(*args, "--summary", "-o", str(tmp_path / "out.jsonl"))
    assert r.code == 0, r.err
    rows = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [row["tokens"] for row in rows] == want
    summary = orjson.loads(r.out)["cache"]
    assert (summary["tier_errors"]["l2"], summary["l2_hits"], summary["misses"]) == (3, 1, 3)
    assert "an entry in l2 failed its checksum" in r.err
    r = run(*args, "--summary", "-o", str(tmp_path / "out.jsonl"))  # the recounts were stored over them
    assert orjson.loads(r.out)["cache"]["l2_hits"] == 4


# --- ONNX exports: the sha256 recorded when written -----------------------------------------------

if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
    pytest.skip("the ONNX export tests need onnxruntime and onnx", allow_module_level=True)  # found, not imported


def constant_model(path: Path, hidden: int = 384) -> None:
    """A valid ONNX model with the export's inputs and output that gives every token the same
    vector: BERTScore 1.0 for any pair (the issue's F1 1.0000001)."""
    import onnx
    from onnx import TensorProto, helper

    ones = helper.make_tensor("ones", TensorProto.FLOAT, [hidden], [1.0] * hidden)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    nodes = [
        helper.make_node("Unsqueeze", ["attention_mask", "axes"], ["mask3"]),
        helper.make_node("Cast", ["mask3"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["maskf", "ones"], ["hidden"]),
    ]
    io = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"])
        for n in ("input_ids", "attention_mask")
    ]
    out = helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "tokens", hidden])
    model = helper.make_model(
        helper.make_graph(nodes, "constant", io, [out], initializer=[ones, axes]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def onnx_home(tmp_path_factory):
    """An OMNITOK_HOME holding BERTScore's export, copied from the session's shared one (made once
    per machine by whichever test first needs it) so that this module may tamper with it."""
    import shutil

    from omnitok.embedding.onnx import cache_root, exported
    from omnitok.validation.bertscore import default_model_dir

    shared = exported(default_model_dir(), 6, "fused")
    home = tmp_path_factory.mktemp("home")
    target = home / "assets" / "onnx" / shared.relative_to(cache_root())
    target.parent.mkdir(parents=True)
    shutil.copyfile(shared, target)
    shutil.copyfile(shared.with_name("model.json"), target.with_name("model.json"))
    return home, target


GATE = ["validate", "--metrics", "bertscore", "--min-bertscore", "0.99", "--no-cache", "--format", "jsonl",
        "--original", "The cat sat on the mat near the door.", "--compressed", "Quantum chromodynamics of gluons"]  # fmt: skip


def test_a_swapped_export_is_exported_again(onnx_home):
    home, export = onnx_home
    recorded = orjson.loads(export.with_name("model.json").read_bytes())["sha256"]
    r = run(*GATE, env={"OMNITOK_HOME": str(home)})
    assert r.code == EXIT_GATE_FAILED, r.err
    honest = orjson.loads(r.out.splitlines()[0])["bertscore_f1"]
    assert honest < 0.5
    constant_model(export)  # another valid model in its place
    r = run(*GATE, env={"OMNITOK_HOME": str(home)})
    assert r.code == EXIT_GATE_FAILED, r.err  # the planted model would pass anything (F1 1.0)
    assert orjson.loads(r.out.splitlines()[0])["bertscore_f1"] == honest
    assert hashlib.sha256(export.read_bytes()).hexdigest() == recorded  # exported again, the same file


def test_the_stat_memo_spares_hashing_only_while_the_file_is_unchanged(onnx_home, monkeypatch):
    import os

    from omnitok.embedding import onnx

    home, export = onnx_home
    monkeypatch.setenv("OMNITOK_HOME", str(home))
    hashed = []
    real = onnx.sha256_file
    monkeypatch.setattr(onnx, "sha256_file", lambda p: hashed.append(p) or real(p))
    monkeypatch.setattr(onnx, "SETTLED_NS", 0)
    assert onnx.intact(export) and onnx.intact(export)
    assert len(hashed) <= 1  # hashed at most once, then the stat is remembered
    hashed.clear()
    st = export.stat()

    def flip_byte():  # in place (not the ~90 MB read and written again)
        with open(export, "r+b") as f:
            f.seek(-100, os.SEEK_END)
            byte = f.read(1)[0]
            f.seek(-100, os.SEEK_END)
            f.write(bytes([byte ^ 0xFF]))

    flip_byte()  # one byte changed: same size,
    os.utime(export, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, same inode: only ctime differs
    assert export.stat().st_size == st.st_size and export.stat().st_ino == st.st_ino
    assert not onnx.intact(export) and len(hashed) == 1
    flip_byte()  # put back: hashed again, and intact
    assert onnx.intact(export)
    for bad in (b"not json", b'{"sha256": "x"}', b'{"sha256": "' + b"0" * 64 + b'", "stat": null}'):
        export.with_name("model.json").write_bytes(bad)
        assert not onnx.intact(export)
