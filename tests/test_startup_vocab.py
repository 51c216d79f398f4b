"""Start-up of a small count (issue 26 item 2): where no engine is named, an input of at most 64 KiB
of an OpenAI model is counted by pybpe (its vocabulary read from the derived rank file that
omnitok keeps under OMNITOK_HOME, assets/rank_cache.py), larger ones by gigatoken as before.

Through the console script: the counts equal tiktoken's encode_ordinary, the rows name the engine
that counted, and the derived file is trusted only when its header and digest check out: a
damaged, truncated or foreign one is rebuilt, never loaded; a home that cannot be written counts
without one."""

from __future__ import annotations

import hashlib
import marshal
import os

import orjson
import pytest

from tests.console import omnitok

TEXTS = [
    "hello",
    "Hello, world! 12345 résumé naïve — “quotes” 🤖🎉 日本語のテキスト",
    "<|endoftext|> looks special but is text\n\n\t  trailing   ",
    "def f(x):\n    return x ** 2  # comment\n" * 20,
]
SOURCE_SHA = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # o200k_base.tiktoken


def _derived(home):
    return home / "assets" / "derived" / f"o200k_base-{SOURCE_SHA[:16]}-m{marshal.version}.ranks"


def _table(home):
    return home / "assets" / "derived" / f"o200k_base-{SOURCE_SHA[:16]}.rtable"


def _rows(home, *args: str, stdin: bytes = b"") -> list[dict]:
    r = omnitok("count", "-m", "gpt-4o", "--format", "jsonl", *args, stdin=stdin, env={"OMNITOK_HOME": str(home)})
    assert (r.code, r.err) == (0, "")
    return [orjson.loads(line) for line in r.out.splitlines()]


def test_small_inputs_count_exactly_with_pybpe_from_the_derived_file(tmp_path, ref_o200k):
    home = tmp_path / "home"
    expected = [len(ref_o200k.encode_ordinary(t)) for t in TEXTS]
    rows = _rows(home, *(a for t in TEXTS for a in ("--text", t)))  # the first run writes the file
    assert [(r["tokens"], r["engine"]) for r in rows] == [(n, "pybpe") for n in expected]
    derived = _derived(home)
    assert derived.read_bytes().startswith(b"omnitok-ranks 1 marshal")
    assert _table(home).read_bytes().startswith(b"omnitok-rtable 1 " + SOURCE_SHA.encode())
    assert sorted(derived.parent.iterdir()) == sorted([derived, _table(home)])  # no temporary file left
    stamp = derived.stat().st_mtime_ns, _table(home).stat().st_mtime_ns

    # stdin from a pipe (read ahead, then counted) and a file: the same counts, from the file
    stdin = b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in enumerate(TEXTS))
    rows = _rows(home, stdin=stdin)
    assert [(r["id"], r["tokens"], r["engine"]) for r in rows] == [(i, n, "pybpe") for i, n in enumerate(expected)]
    (tmp_path / "in.jsonl").write_bytes(stdin)
    assert [r["tokens"] for r in _rows(home, str(tmp_path / "in.jsonl"))] == expected
    assert (derived.stat().st_mtime_ns, _table(home).stat().st_mtime_ns) == stamp  # read, not rewritten


def test_a_large_input_still_counts_with_gigatoken(tmp_path, ref_o200k):
    """Over 64 KiB on a pipe: the bytes read ahead are given back, every record counted in order."""
    texts = [f"record {i}: " + TEXTS[i % len(TEXTS)] for i in range(400)]
    stdin = b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in enumerate(texts))
    assert len(stdin) > 64 * 1024
    rows = _rows(tmp_path / "home", stdin=stdin)
    assert [(r["id"], r["tokens"]) for r in rows] == [
        (i, len(ref_o200k.encode_ordinary(t))) for i, t in enumerate(texts)
    ]
    assert {r["engine"] for r in rows} == {"gigatoken"}
    assert _rows(tmp_path / "home", stdin=stdin[:1000].rsplit(b"\n", 1)[0])[0]["engine"] == "pybpe"
    # a named engine is the user's choice, small input or not
    assert _rows(tmp_path / "home", "--engine", "gigatoken", "--text", "hello")[0]["engine"] == "gigatoken"


def _damage(kind: str, good: bytes) -> bytes:
    head, _, payload = good.partition(b"\n")
    fields = head.split(b" ")
    if kind == "flipped":
        return head + b"\n" + payload[:5000] + bytes([payload[5000] ^ 0xFF]) + payload[5001:]
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "empty":
        return b""
    if kind == "garbage-marshal":  # bytes marshal may choke on, under the old digest
        return head + b"\n" + b"\xdb\xff\xff\xff\x7f" + b"\x00" * 64
    ranks = marshal.loads(payload)
    del ranks[b"hello"]  # a vocabulary that counts "hello" as more than one token
    forged = marshal.dumps(ranks)
    if kind == "other-ranks":  # valid marshal, header of the real file: the digest does not match
        return head + b"\n" + forged
    if kind == "other-source":  # its own digest right, but derived from another rank file
        fields[3], fields[4], fields[5] = b"0" * 64, hashlib.sha256(forged).hexdigest().encode(), b"%d" % len(ranks)
        return b" ".join(fields) + b"\n" + forged
    raise AssertionError(kind)


def _damage_table(kind: str, good: bytes) -> bytes:
    """The same damage to the table form (assets/rank_table.py): header, then arrays."""
    from omnitok.assets import rank_table

    head, payload = good[: rank_table.HEAD], good[rank_table.HEAD :]
    if kind == "flipped":
        return head + payload[:5000] + bytes([payload[5000] ^ 0xFF]) + payload[5001:]
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "empty":
        return b""
    if kind == "garbage-marshal":  # sizes that point past the file, under the real digest
        fields = head.split()
        fields[4] = b"99999999"
        return b" ".join(fields).ljust(rank_table.HEAD - 1) + b"\n" + payload
    table = rank_table._checked(good, SOURCE_SHA)
    ranks = dict(table.items())
    del ranks[b"hello"]
    if kind == "other-ranks":  # the real header over another table
        return head + rank_table.build(ranks, SOURCE_SHA)[rank_table.HEAD :]
    if kind == "other-source":  # its own digest right, but made from another rank file
        return rank_table.build(ranks, "0" * 64)
    raise AssertionError(kind)


# The two derived forms: the marshalled dict tiktoken's engine loads (`--engine tiktoken`), the
# table pybpe maps (auto, a small input).
FORMS = {
    "ranks": (_derived, ("--engine", "tiktoken"), "tiktoken", _damage),
    "rtable": (_table, (), "pybpe", _damage_table),
}


@pytest.mark.parametrize("form", FORMS)
def test_a_bad_derived_file_is_rebuilt_not_loaded(tmp_path, ref_o200k, form):
    where, args, engine, damage = FORMS[form]
    home = tmp_path / "home"
    assert _rows(home, *args, "--text", "hello")[0]["tokens"] == 1
    derived = where(home)
    good = derived.read_bytes()
    text = "hello world, hello again"
    for kind in ("flipped", "truncated", "empty", "garbage-marshal", "other-ranks", "other-source"):
        derived.write_bytes(damage(kind, good))
        row = _rows(home, *args, "--text", text)[0]
        assert (row["tokens"], row["engine"]) == (len(ref_o200k.encode_ordinary(text)), engine), kind
        assert derived.read_bytes() == good, kind  # rebuilt


def test_a_home_that_cannot_be_written_counts_without_the_file(tmp_path, ref_o200k):
    """OMNITOK_HOME read-only (here: its assets/derived directory cannot be made, which holds for
    root too): no file, no warning, exact counts."""
    home = tmp_path / "home"
    (home / "assets").mkdir(parents=True)
    (home / "assets" / "derived").write_text("not a directory")
    home.chmod(0o555)
    (home / "assets").chmod(0o555)
    try:
        for text in ("naïve 🤖 text", "plain café", "naïve 🤖 text"):  # tiktoken behind pybpe; pybpe on the dict
            row = _rows(home, stdin=text.encode())[0]
            assert (row["tokens"], row["engine"]) == (len(ref_o200k.encode_ordinary(text)), "pybpe")
        assert sorted(p.name for p in (home / "assets").iterdir()) == ["derived"]
    finally:
        (home / "assets").chmod(0o755)
        home.chmod(0o755)


@pytest.mark.parametrize("form", FORMS)
def test_a_derived_file_others_could_write_or_a_link_or_a_fifo_is_never_read(tmp_path, ref_o200k, form):
    """Only a regular file of this user's that group and others cannot write is read: a file made
    writable by others, a symlink to a good file and a FIFO (which would block a reader) are
    replaced by a good file, and every count is exact and finishes."""
    where, args, engine, _ = FORMS[form]
    home = tmp_path / "home"
    text = "hello world, hello again"
    want = len(ref_o200k.encode_ordinary(text))
    assert _rows(home, *args, "--text", text)[0]["tokens"] == want
    derived = where(home)
    good = derived.read_bytes()
    (tmp_path / "good.ranks").write_bytes(good)
    for kind in ("other-writable", "symlink", "fifo"):
        derived.unlink()
        if kind == "other-writable":
            derived.write_bytes(good)
            derived.chmod(0o666)
        elif kind == "symlink":
            derived.symlink_to(tmp_path / "good.ranks")
        else:
            os.mkfifo(derived)
        row = _rows(home, *args, "--text", text)[0]
        assert (row["tokens"], row["engine"]) == (want, engine), kind
        assert not derived.is_symlink() and derived.is_file() and derived.read_bytes() == good, kind
        assert derived.stat().st_mode & 0o777 == 0o644, kind


def test_packed_inputs_are_never_small(tmp_path, ref_o200k):
    """A small gzip or Parquet file may hold far more text than its size: gigatoken counts it."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    text = "hello world " * 10
    want = len(ref_o200k.encode_ordinary(text))
    line = orjson.dumps({"text": text}) + b"\n"
    (tmp_path / "in.jsonl.gz").write_bytes(gzip.compress(line))
    pq.write_table(pa.table({"text": [text]}), tmp_path / "in.parquet")
    home = tmp_path / "home"
    for args, stdin in (
        ((str(tmp_path / "in.jsonl.gz"),), b""),
        ((str(tmp_path / "in.parquet"),), b""),
        ((), gzip.compress(line)),  # stdin from a pipe, sniffed
        ((), line),  # the same text plain: small
    ):
        row = _rows(home, *args, stdin=stdin)[0]
        assert (row["tokens"], row["engine"]) == (want, "gigatoken" if args or stdin != line else "pybpe"), args
