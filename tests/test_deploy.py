"""Deployment and CI files, checked without Docker, Kubernetes or GitHub: the Dockerfile parsed
(multi-stage, non-root, assets baked in, offline, a health check, `omnitok serve` on the exposed
port with the bearer token a non-loopback server requires), the Kubernetes manifest's probes and
ports against the app's real routes and the serve command's real options (the token and the Redis
password from Secrets, never written out), and the pre-commit hook and the composite action's
scripts run as the shell would run them, against sample files."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifest and the action (installed with the test extra)")

ROOT = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent)


# --- the Dockerfile --------------------------------------------------------------------------------


def dockerfile() -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) for each instruction, continuation lines joined."""
    out, stage, buf = [], -1, ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line, buf = buf + line, ""
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec form (signals reach omnitok): {args}"
    return json.loads(args)


def serve_port(argv: list[str]) -> int:
    """The --port an `omnitok serve` argument list asks for (8001 by default)."""
    for i, a in enumerate(argv):
        if a == "--port":
            return int(argv[i + 1])
        if a.startswith("--port="):
            return int(a.split("=", 1)[1])
    return 8001


def serve_options_parse(args: list[str]) -> dict:
    """The arguments parse as `omnitok serve` options (names, values, range checks), without
    starting a server: their values by parameter name."""
    import typer

    from omnitok.cli.app import app

    group = typer.main.get_command(app)
    serve = group.commands["serve"]
    return serve.make_context("serve", list(args)).params


def serve_config(args: list[str], token_file: str | None = None):
    """The ServeConfig `omnitok serve ARGS` would run with (its checks: a non-loopback --host needs
    a token file), the token file read from `token_file` instead of its path in the image."""
    from omnitok.serve.config import ServeConfig

    p = serve_options_parse(args)
    return ServeConfig(
        host=p["host"],
        port=p["port"],
        workers=p["workers"],
        graceful_timeout=p["graceful_timeout"],
        auth_token_file=token_file if p["auth_token_file"] and token_file else p["auth_token_file"],
        no_auth=p["no_auth"],
        allowed_hosts=tuple(p["allowed_host"] or ()),
        body_timeout=p["body_timeout"],
        max_inflight_mb=p["max_inflight_mb"],
    )


def without_token(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--auth-token-file":
            skip = True
        elif not a.startswith("--auth-token-file="):
            out.append(a)
    return out


def test_dockerfile_is_multi_stage_non_root_offline_and_bakes_assets():
    ins = dockerfile()
    last = max(stage for stage, _, _ in ins)
    assert last >= 1, "multi-stage: a builder and a runtime stage"
    final = [(word, rest) for stage, word, rest in ins if stage == last]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime runs as a non-root user"
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env)
    # Assets: `omnitok bundle install` in a stage whose files the runtime copies.
    install = [stage for stage, word, rest in ins if word == "RUN" and "omnitok bundle install" in rest]
    assert install and all(stage < last for stage in install)
    copied = [rest for word, rest in final if word == "COPY" and rest.startswith("--from=")]
    assert any("/opt/omnitok" in c for c in copied) and any("/opt/venv" in c for c in copied)
    recipe = re.search(r"ARG OMNITOK_BUNDLE_RECIPE=(\S+)", "\n".join(f"{w} {r}" for _, w, r in ins))
    assert recipe and (ROOT / "bundles" / f"{recipe.group(1)}.toml").exists()
    assert any(word == "HEALTHCHECK" for word, _ in final)


def test_dockerfile_runs_omnitok_serve_on_the_exposed_port():
    ins = dockerfile()
    last = max(stage for stage, _, _ in ins)
    final = {word: rest for stage, word, rest in ins if stage == last}  # the last of each kind
    argv = exec_form(final["ENTRYPOINT"]) + exec_form(final["CMD"])
    assert argv[:2] == ["omnitok", "serve"]
    exposed = int(final["EXPOSE"].split("/")[0])
    assert serve_port(argv[2:]) == exposed
    assert "--host" in argv and argv[argv.index("--host") + 1] == "0.0.0.0"  # reachable from outside
    # ... so it requires the bearer token, read from a file where Docker mounts secrets.
    options = serve_options_parse(argv[2:])
    assert options["auth_token_file"].startswith("/run/secrets/") and not options["no_auth"]
    assert serve_config(argv[2:]).auth_token_file == options["auth_token_file"]
    from omnitok.errors import UsageError

    with pytest.raises(UsageError, match="--auth-token-file"):
        serve_config(without_token(argv[2:]))  # the image's CMD without it would not start
    check = final["HEALTHCHECK"]
    url = re.search(r"http://[^'\" ]+", check).group(0)
    assert urlsplit(url).port == exposed and urlsplit(url).path in app_routes()


# --- the Kubernetes manifest ---------------------------------------------------------------------


def manifest() -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()) if d]


def api_container() -> tuple[dict, dict]:
    dep = next(d for d in manifest() if d["kind"] == "Deployment" and d["metadata"]["name"] == "omnitok")
    pod = dep["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def app_routes() -> set[str]:
    """The paths the server answers: its OpenAPI description's (every route, the probes included:
    the app is routers included into it, whose route objects name no path of their own)."""
    from omnitok.serve import create_app

    return set(create_app().openapi()["paths"])


def test_manifest_ports_match_the_image():
    pod, c = api_container()
    ins = dockerfile()
    last = max(stage for stage, _, _ in ins)
    exposed = int(next(rest for stage, word, rest in ins if stage == last and word == "EXPOSE").split("/")[0])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == exposed
    # The container runs the image's ENTRYPOINT (omnitok serve) with these arguments.
    assert "command" not in c
    serve_config(c["args"])  # accepted as the server's config: a non-loopback --host with a token
    assert serve_port(c["args"]) == exposed
    service = next(d for d in manifest() if d["kind"] == "Service" and d["metadata"]["name"] == "omnitok")
    assert service["spec"]["ports"][0]["targetPort"] in ("http", exposed)
    labels = next(d for d in manifest() if d["metadata"]["name"] == "omnitok")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= labels["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Graceful shutdown fits inside the pod's grace period.
    graceful = next(float(a.split("=", 1)[1]) for a in c["args"] if a.startswith("--graceful-timeout="))
    assert graceful < pod["terminationGracePeriodSeconds"]


def test_manifest_token_comes_from_a_secret_file():
    pod, c = api_container()
    options = serve_options_parse(c["args"])
    assert not options["no_auth"]
    token = Path(options["auth_token_file"])
    mount = next(m for m in c["volumeMounts"] if token.parent == Path(m["mountPath"]))
    assert mount.get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret = volume["secret"]["secretName"]
    assert secret and (volume["secret"].get("defaultMode", 0o644) & 0o007) == 0  # not world-readable
    # Nowhere a secret written out: every variable whose name says secret or password comes from a
    # Secret, and a URL's password is a reference to one of those.
    pods = [d["spec"]["template"]["spec"] for d in manifest() if d["kind"] == "Deployment"]
    for spec in pods:
        for container in spec["containers"]:
            from_secrets = set()
            for e in container.get("env", []):
                if "secretKeyRef" in e.get("valueFrom", {}):
                    from_secrets.add(e["name"])
                    continue
                assert not re.search(r"(?i)secret|password|token|auth", e["name"]), e
                password = urlsplit(e["value"]).password if "://" in e.get("value", "") else None
                assert password is None or re.fullmatch(r"\$\((\w+)\)", password).group(1) in from_secrets, e
            args = container.get("args", [])
            if "--requirepass" in args:
                assert re.fullmatch(r"\$\((\w+)\)", args[args.index("--requirepass") + 1]).group(1) in from_secrets


def test_manifest_probes_hit_real_routes_that_answer(tmp_path):
    from fastapi.testclient import TestClient

    from omnitok.serve import create_app

    _, c = api_container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {name: c[name]["httpGet"] for name in ("livenessProbe", "readinessProbe", "startupProbe") if name in c}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["readinessProbe"]["path"] == "/readyz"
    routes = app_routes()
    # With the manifest's options (its token file, its host: any Host header, as the kubelet sends
    # the pod's IP), the probes still need no token.
    token = tmp_path / "token"
    token.write_text("probe-test-token\n")
    config = serve_config(c["args"], str(token))
    with TestClient(create_app(config), base_url="http://10.1.2.3:8001") as client:
        for name, get in probes.items():
            assert get["path"] in routes, f"{name} probes {get['path']}, which the app does not serve"
            assert get["port"] in ports or get["port"] in ports.values()
            deadline = time.monotonic() + 30
            while (r := client.get(get["path"])).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.05)  # /readyz: the tokenizer loads in the background
            assert r.status_code == 200, (name, r.text)
        assert client.get("/stats").status_code == 401  # the rest does need it


def test_manifest_l3_is_the_redis_service(monkeypatch):
    _, c = api_container()
    env = {e["name"]: e.get("value") for e in c["env"]}
    url = urlsplit(env["L3_CACHE_URL"])
    assert url.scheme == "redis"
    # Redis requires a password (AUTH), the same Secret key on both sides.
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    names = [e["name"] for e in c["env"]]
    password_var = re.fullmatch(r"\$\((\w+)\)", url.password).group(1)
    assert names.index(password_var) < names.index("L3_CACHE_URL")  # Kubernetes fills in earlier ones only
    services = {d["metadata"]["name"]: d for d in manifest() if d["kind"] == "Service"}
    svc = services[url.hostname]
    port = next(p for p in svc["spec"]["ports"] if p["port"] == url.port)
    redis = next(
        d
        for d in manifest()
        if d["kind"] == "Deployment"
        and svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    )
    server = redis["spec"]["template"]["spec"]["containers"][0]
    names = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert port["targetPort"] in names or port["targetPort"] in names.values()
    required = re.fullmatch(r"\$\((\w+)\)", server["args"][server["args"].index("--requirepass") + 1]).group(1)
    redis_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in server["env"] if "valueFrom" in e}
    assert redis_refs[required] == refs[password_var]
    # omnitok reads that variable for its L3 (the same setting --l3-url gives).
    from omnitok.cache import settings_from

    monkeypatch.setenv("L3_CACHE_URL", env["L3_CACHE_URL"])
    assert settings_from().l3_url == env["L3_CACHE_URL"]


# --- the pre-commit hook ---------------------------------------------------------------------------


def shell_env() -> dict:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}


@pytest.fixture
def prompts(tmp_path):
    d = tmp_path / "prompts"
    d.mkdir()
    (d / "short.txt").write_text("You are a helpful assistant. Answer briefly.\n")
    (d / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    (d / "long.txt").write_text("word " * 300)
    return d


def long_tokens(prompts: Path) -> int:
    import omnitok

    return omnitok.count((prompts / "long.txt").read_text(), model="gpt-4o").tokens


def test_pre_commit_hook_entry(prompts):
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "omnitok-max-tokens" and hook["language"] == "python"
    files = re.compile(hook["files"])
    assert files.search("prompts/system.txt") and files.search("agent.prompt") and files.search("x/a.prompt.md")
    assert not files.search("README.md") and not files.search("src/main.py")

    def run(args: list[str], *names: str) -> subprocess.CompletedProcess:
        # pre-commit runs `entry args... filenames`
        argv = shlex.split(hook["entry"]) + args + [str(prompts / n) for n in names]
        return subprocess.run(argv, capture_output=True, text=True, env=shell_env(), cwd=prompts, timeout=120)

    assert run(hook["args"], "short.txt", "chat.jsonl", "long.txt").returncode == 0  # within 8000
    over = run(["--max-tokens", "100"], "short.txt", "chat.jsonl", "long.txt")
    assert over.returncode == 3, over.stderr
    assert f"long.txt: {long_tokens(prompts)} tokens" in over.stderr and "short.txt" not in over.stderr
    assert run(["--max-tokens", "100", "--model", "gpt-4"], "short.txt").returncode == 0


# --- the composite action ----------------------------------------------------------------------------


def action() -> dict:
    return yaml.safe_load((ROOT / "action.yml").read_text())


def run_step(step_id: str, inputs: dict, tmp_path: Path, cwd: Path) -> subprocess.CompletedProcess:
    """A `run:` step as GitHub runs it (`bash --noprofile --norc -eo pipefail FILE`), its `env:`
    with ${{ inputs.* }} replaced by the inputs (defaults for the rest)."""
    spec = action()
    values = {name: str(i.get("default", "")) for name, i in spec["inputs"].items()}
    values.update(inputs)
    step = next(s for s in spec["runs"]["steps"] if s.get("id") == step_id)
    assert "${{" not in step["run"], "inputs reach the script through env, never pasted into it"

    def expand(value: str) -> str:
        return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values[m.group(1)], str(value))

    env = shell_env()
    env.update({k: expand(v) for k, v in step.get("env", {}).items()})
    env["GITHUB_OUTPUT"] = str(tmp_path / "github_output")
    env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "step_summary")
    script = tmp_path / f"{step_id}.sh"
    script.write_text(step["run"])
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
    )


def test_action_install_step_is_pip_then_omnitok():
    step = next(s for s in action()["runs"]["steps"] if s.get("id") == "install")
    assert "pip install" in step["run"] and '"$INPUT_PACKAGE"' in step["run"]
    assert subprocess.run(["bash", "-n"], input=step["run"], text=True).returncode == 0


def test_action_count_step(prompts, tmp_path):
    ok = run_step("count", {"files": "prompts/*.txt prompts/*.jsonl"}, tmp_path, prompts.parent)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["records"] == 3
    over = run_step("count", {"files": "prompts/**/*.txt", "max-tokens": "100"}, tmp_path, prompts.parent)
    assert over.returncode == 3, over.stderr
    n = long_tokens(prompts)
    assert f"::error file=prompts/long.txt,title=omnitok: over the token budget::{n} tokens > 100" in over.stdout
    jsonl = prompts / "many.jsonl"
    jsonl.write_text(json.dumps({"text": "a " * 50}) + "\n" + json.dumps({"text": "b " * 500}) + "\n")
    over = run_step("count", {"files": "prompts/many.jsonl", "max-tokens": "100"}, tmp_path, prompts.parent)
    assert over.returncode == 3 and "::error file=prompts/many.jsonl,line=2," in over.stdout
    none = run_step("count", {"files": "nothing/*.txt"}, tmp_path, prompts.parent)
    assert none.returncode == 2 and "no file matches" in none.stdout
    skipped = run_step("count", {"files": ""}, tmp_path, prompts.parent)
    assert skipped.returncode == 0 and "skipped" in skipped.stdout
    # An input is data, not shell: nothing in it runs.
    evil = run_step("count", {"files": "$(touch pwned) `touch pwned2`; touch pwned3"}, tmp_path, prompts.parent)
    assert evil.returncode != 0
    assert not any((prompts.parent / n).exists() for n in ("pwned", "pwned2", "pwned3"))


def test_action_validate_step_writes_junit_and_annotations(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    pairs = work / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"id": "p1", "original": "the cat sat on the mat", "compressed": "the cat sat on the mat"})
        + "\n"
        + json.dumps({"id": "p2", "original": "the dog ran in the park", "compressed": "the dog ran in the park"})
        + "\n"
    )
    inputs = {"validate-files": "pairs.jsonl", "min-rouge-l": "0.5", "junit-path": "out/junit.xml"}
    (work / "out").mkdir()
    ok = run_step("validate", inputs, tmp_path, work)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    suite = ET.parse(work / "out" / "junit.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    assert "junit-path=out/junit.xml" in (tmp_path / "github_output").read_text()
    pairs.write_text(pairs.read_text() + json.dumps({"id": "p3", "original": "a b c d e f", "compressed": "zz"}) + "\n")
    bad = run_step("validate", {**inputs, "max-ratio": "2"}, tmp_path, work)
    assert bad.returncode == 6, bad.stdout + bad.stderr
    assert ET.parse(work / "out" / "junit.xml").getroot().get("failures") == "1"
    assert re.search(r"^::error title=omnitok validate::pairs.jsonl:3: rouge-l f1", bad.stdout, re.M)
    assert "p3" in (tmp_path / "step_summary").read_text() or "pairs.jsonl:3" in (tmp_path / "step_summary").read_text()
    skipped = run_step("validate", {"validate-files": ""}, tmp_path, work)
    assert skipped.returncode == 0 and "skipped" in skipped.stdout


def _docker() -> str | None:
    """Why the image cannot be built here, or None when a Docker daemon answers."""
    import shutil

    if shutil.which("docker") is None:
        return "no docker CLI on this machine (CI has no Docker daemon)"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "the docker CLI finds no daemon"
    return None


@pytest.mark.skipif(_docker() is not None, reason=str(_docker()))
def test_the_image_builds_and_serves_as_its_non_root_user(tmp_path):
    """Where Docker exists: the image builds (the openai recipe, the smallest), runs `omnitok
    serve` as user 10001 with the token mounted, and answers /healthz and a count."""
    tag = "omnitok-test:ci"
    build = ["docker", "build", "-q", "-t", tag, "--build-arg", "OMNITOK_BUNDLE_RECIPE=openai", str(ROOT)]
    subprocess.run(build, check=True, capture_output=True, timeout=1800)
    token = tmp_path / "token"
    token.write_text("test-token\n")
    name = f"omnitok-test-{os.getpid()}"
    run = ["docker", "run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::8001"]
    run += ["-v", f"{token}:/run/secrets/omnitok-token:ro", tag]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    try:
        port = subprocess.run(["docker", "port", name, "8001"], capture_output=True, text=True, check=True)
        url = "http://" + port.stdout.split()[0]
        user = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True, text=True, check=True)
        assert user.stdout.strip() == "10001"
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the container never answered /healthz"
            time.sleep(1)
        r = httpx.post(
            f"{url}/count-tokens",
            json={"text": "Hello, world!", "model_id": "gpt-4"},
            headers={"Authorization": "Bearer test-token"},
            timeout=30,
        )
        assert (r.status_code, r.json()["token_count"]) == (200, 4)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
