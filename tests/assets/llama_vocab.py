"""llama.cpp's tokenizer test vectors, from the llama-cpp-python source distribution on PyPI.

The sdist carries `vendor/llama.cpp/models/ggml-vocab-*.gguf` (vocabulary-only GGUF files) with
`.inp` / `.out` pairs: texts and the token ids llama.cpp's tests expect (no BOS). `make install`
runs this module to fetch the sdist with pip (PyPI only, sha256 pinned) and extract those files
into .venv/share/omnitok-tests/llama.cpp/; tests read them from there. The Gemma and Llama
vocabularies are not ours to ship, so they never enter the repository or the package.

    python -m tests.assets.llama_vocab          # fetch if missing, print the directory
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "llama-cpp-python==0.3.36"
SDIST_FILE = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VOCABS = ("gemma-4", "llama-bpe", "llama-spm", "phi-3", "qwen2")
ROOT = Path(sys.prefix) / "share" / "omnitok-tests" / "llama.cpp"
SEPARATOR = "\n__ggml_vocab_test__\n"


def path(name: str) -> Path:
    return ROOT / f"ggml-vocab-{name}.gguf"


def present() -> bool:
    return all(path(n).is_file() and path(n).with_suffix(".gguf.out").is_file() for n in VOCABS)


def vectors(name: str) -> list[tuple[str, list[int]]]:
    """(text, expected ids) pairs, as llama.cpp's test-tokenizer-0 reads them."""
    texts = path(name).with_suffix(".gguf.inp").read_text(encoding="utf-8").split(SEPARATOR)
    ids = path(name).with_suffix(".gguf.out").read_text(encoding="utf-8").split("\n")
    texts = texts[:-1] if texts and texts[-1] == "" else texts
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, ids, strict=False)]


def fetch() -> Path:
    if present():
        return ROOT
    wanted = {f"ggml-vocab-{n}.gguf{ext}" for n in VOCABS for ext in ("", ".inp", ".out")}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", SDIST, "-d", tmp],
            check=True,
        )
        sdist = Path(tmp) / SDIST_FILE
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != SDIST_SHA256:
            raise SystemExit(f"{sdist.name}: sha256 {digest}, expected {SDIST_SHA256}")
        ROOT.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in wanted and "/vendor/llama.cpp/models/" in member.name:
                    data = tar.extractfile(member).read()  # regular file, written under a fixed name
                    (ROOT / name).write_bytes(data)
    if not present():
        raise SystemExit(f"{SDIST_FILE} did not hold all of {sorted(wanted)}")
    return ROOT


if __name__ == "__main__":
    print(fetch())
