"""gigatoken's own file path, a whole process (the reference form of issue 26's 1 GB goal):
`Tokenizer.from_tiktoken(rank file).encode_files(JsonlFileSource([FILE], "text"), parallel=True)`,
printing the token total. It skips lines it cannot read (no error rows, no ids) and returns every
token id, so it is a speed reference, not a counting path.

    python -m benchmarks.engine_files o200k_base FILE
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(encoding: str, path: str) -> None:
    import awkward
    import gigatoken

    import omnitok
    from omnitok.tokenizers.openai_encodings import ENCODINGS

    ranks = Path(omnitok.__file__).parent / "assets/data/openai" / f"{encoding}.tiktoken"
    tok = gigatoken.Tokenizer.from_tiktoken(
        str(ranks), pretokenizer=ENCODINGS[encoding].gigatoken_pretokenizer, special_tokens={}
    )
    ids = tok.encode_files(gigatoken.JsonlFileSource([path], "text"), parallel=True)
    print(int(awkward.sum(awkward.num(ids, axis=1))))


if __name__ == "__main__":
    main(*sys.argv[1:])
