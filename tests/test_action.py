"""action.yml's steps run in a shell as a GitHub runner runs them (issue 27, item 1): each `run:` script
is taken from action.yml with a YAML parser and run by `bash --noprofile --norc -eo pipefail` (the
runner's `shell: bash`), with its `env:` (inputs substituted), GITHUB_OUTPUT, GITHUB_STEP_SUMMARY
and GITHUB_ACTION_PATH (this repository) set, in a workspace of prompt files. omnitok is already
installed here, so the install step runs with a `python` that records what pip would install."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.console import OMNITOK

REPO = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((REPO / "action.yml").read_text())
STEPS = {s.get("id"): s for s in ACTION["runs"]["steps"]}
DEFAULTS = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}


def run_step(step_id: str, workspace: Path, inputs: dict[str, str], path_first: Path | None = None):
    step = STEPS[step_id]
    assert step["shell"] == "bash"
    values = {**DEFAULTS, **inputs}
    env = {
        k: re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values[m.group(1)], str(v))
        for k, v in step.get("env", {}).items()
    }
    assert not any("${{" in v for v in env.values()) and "${{" not in step["run"]
    runner = workspace.parent / "runner"
    runner.mkdir(exist_ok=True)
    script = runner / f"{step_id}.sh"
    script.write_text(step["run"])
    output, summary = runner / "output", runner / "summary"
    output.touch()
    summary.touch()
    bins = [str(Path(OMNITOK).parent)] + ([str(path_first)] if path_first else [])
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))},
        **env,
        "PATH": os.pathsep.join([*reversed(bins), os.environ["PATH"]]),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_ACTION_PATH": str(REPO),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_ACTIONS": "true",
    }
    p = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=workspace,
        env=full_env,
        capture_output=True,
        timeout=120,
    )
    return p.returncode, p.stdout.decode(), p.stderr.decode(), output.read_text(), summary.read_text()


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    (ws / "prompts" / "chat").mkdir(parents=True)
    (ws / "prompts" / "hello.txt").write_text("Hello, world!")
    (ws / "prompts" / "chat" / "req.json").write_text(
        json.dumps([{"text": "short"}, {"text": "word " * 40}], indent=2)  # the second starts on line 5
    )
    (ws / "prompts" / "chat" / "more.jsonl").write_text('{"text": "a"}\n')
    return ws


def test_globstar_takes_the_files_under_a_directory(workspace, ref_o200k):
    code, out, err, _, _ = run_step("count", workspace, {"files": "prompts/**", "max-tokens": "10"})
    assert "is a directory" not in err
    n = len(ref_o200k.encode_ordinary("word " * 40))
    assert code == 3
    assert [line for line in out.splitlines() if line.startswith("::")] == [
        f"::error file=prompts/chat/req.json,line=5,title=omnitok: over the token budget::{n} tokens > 10"
    ]
    # every file under prompts/ was counted: 1 + 2 + 1 records
    assert "1 of 4 records are over --max-tokens 10:" in err


def test_under_the_budget_passes(workspace):
    code, out, err, _, _ = run_step("count", workspace, {"files": "prompts/**/*.json prompts/*.txt"})
    assert code == 0 and "::" not in out
    assert json.loads(out)["records"] == 3  # hello.txt and req.json's two records


def test_no_match_is_an_error_annotation(workspace):
    code, out, _, _, _ = run_step("count", workspace, {"files": "nothing/**/*.txt"})
    assert (code, out) == (2, "::error title=omnitok::no file matches: nothing/**/*.txt\n")


def test_empty_files_skip_the_check(workspace):
    code, out, _, _, _ = run_step("count", workspace, {"files": ""})
    assert (code, out) == (0, "omnitok: no files: budget check skipped\n")


def test_validate_writes_output_summary_and_junit(workspace):
    pairs = workspace / "eval" / "pairs.jsonl"
    pairs.parent.mkdir()
    pairs.write_text(
        json.dumps({"original": "the cat sat on the mat today", "compressed": "the cat sat on the mat"}) + "\n"
    )
    code, out, err, output, summary = run_step(
        "validate", workspace, {"validate-files": "eval/**", "min-rouge-l": "0.5", "junit-path": "report.xml"}
    )
    assert code == 0, err
    assert output == "junit-path=report.xml\n"
    assert "<testsuite" in (workspace / "report.xml").read_text()
    assert summary.strip() and "|" in summary  # the markdown table
    code, out, err, _, _ = run_step(
        "validate", workspace, {"validate-files": "eval/pairs.jsonl", "min-rouge-l": "0.99"}
    )
    assert code == 6 and "::error" in out


@pytest.mark.parametrize(
    ("inputs", "installed"),
    [
        ({}, str(REPO)),
        ({"validate-files": "eval/*.jsonl"}, f"{REPO}[validate]"),
        ({"package": "omnitok==0.1.0"}, "omnitok==0.1.0"),
    ],
)
def test_install_from_the_actions_checkout(workspace, tmp_path, inputs, installed):
    shim = tmp_path / "shim"
    shim.mkdir()
    log = tmp_path / "pip-args"
    (shim / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\n')
    (shim / "python").chmod(0o755)
    code, out, err, _, _ = run_step("install", workspace, inputs, path_first=shim)
    assert code == 0, err
    assert log.read_text().splitlines() == [
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        installed,
    ]
    assert out.startswith("omnitok ")  # omnitok --version, the installed one
