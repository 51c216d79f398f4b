""".pre-commit-hooks.yaml under a real `pre-commit run` (issue 27, item 2), in a temporary git
repository. The hook is this repository's own definition (entry, args, files, types read from
.pre-commit-hooks.yaml with a YAML parser) as a `repo: local` hook of language `unsupported` (the
omnitok on PATH): `language: python` would pip-install omnitok into a fresh virtualenv from the
package index, which a test cannot reach. pre-commit is in the test extra."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.console import OMNITOK

REPO = Path(__file__).resolve().parent.parent
(HOOK,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
PRE_COMMIT = Path(OMNITOK).with_name("pre-commit")

pytestmark = pytest.mark.skipif(
    not PRE_COMMIT.exists() or shutil.which("git") is None, reason="needs pre-commit (the test extra) and git"
)


@pytest.mark.parametrize(
    ("path", "taken"),
    [
        ("prompts/req.json", True),
        ("prompts/chat/system.txt", True),
        ("app/prompts/a.jsonl", True),
        ("prompts/a.ndjson.gz", True),
        ("prompts/rows.parquet", True),
        ("prompt/x.md", True),
        ("prompts/x.prompt", True),
        ("src/summarise.prompt", True),
        ("src/summarise.prompt.md", True),
        ("data/eval.prompts.jsonl", True),
        ("data/eval.prompt.json", True),
        ("prompts/logo.png", False),  # omnitok would count its bytes as text, if they decoded
        ("prompts/template.j2", False),
        ("src/app.py", False),
        ("data/train.jsonl", False),  # not a prompt file by its name
        ("myprompts/a.txt", False),
    ],
)
def test_pattern_takes_the_files_omnitok_reads(path, taken):
    assert bool(re.search(HOOK["files"], path)) is taken


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_pre_commit_refuses_a_pretty_printed_json_over_the_budget(tmp_path, ref_o200k):
    repo = tmp_path / "repo"
    (repo / "prompts").mkdir(parents=True)
    git(repo, "init", "-q")
    config = {
        "repos": [
            {
                "repo": "local",
                "hooks": [
                    {
                        "id": HOOK["id"],
                        "name": HOOK["name"],
                        "entry": HOOK["entry"],
                        "language": "unsupported",
                        "files": HOOK["files"],
                        "types": HOOK["types"],
                        "args": ["--max-tokens", "20", "--model", "gpt-4o"],
                    }
                ],
            }
        ]
    }
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    under = [{"text": "Hello, world!"}, {"messages": [{"role": "user", "content": "Hi"}]}]
    (repo / "prompts" / "req.json").write_text(json.dumps(under, indent=2))
    (repo / "prompts" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))  # not taken
    git(repo, "add", "-A")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))},
        "PATH": os.pathsep.join([str(Path(OMNITOK).parent), os.environ["PATH"]]),
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
    }

    def run():
        return subprocess.run(
            [str(PRE_COMMIT), "run", "--all-files", "--verbose", "--color", "never"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    p = run()
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"omnitok token budget\.+Passed", p.stdout)

    long = "word " * 30
    (repo / "prompts" / "req.json").write_text(json.dumps([*under, {"text": long}], indent=2))
    git(repo, "add", "-A")
    p = run()
    assert p.returncode == 1  # pre-commit's own code for a failed hook; the hook's is 3
    assert re.search(r"omnitok token budget\.+Failed", p.stdout)
    assert "- exit code: 3" in p.stdout
    n = len(ref_o200k.encode_ordinary(long))
    assert f"  prompts/req.json:13: {n} tokens" in p.stdout.splitlines()
    assert "invalid JSON" not in p.stdout and "logo.png" not in p.stdout
