"""A loopback Hugging Face hub: the file-resolve API (/{repo}/resolve/{rev}/{file}, with the
headers huggingface_hub reads) and /api/models/{repo}[/revision/{rev}] for the file list, serving
real tokenizer files from a local directory."""

from __future__ import annotations

import hashlib
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests._http import serve_in_thread


class MockHub:
    def __init__(self, repos: dict[str, Path], gated: set[str] = frozenset(), extra: dict | None = None):
        self.repos = repos  # repo id -> directory of files
        self.extra = extra or {}  # repo id -> {file name: bytes} served besides the directory's files
        self.gated = set(gated)
        self.commits = {r: hashlib.sha1(r.encode()).hexdigest() for r in repos}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve_in_thread(self.server)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body: bytes, headers: dict, head: bool = False):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _route(self, head: bool):
                hub.requests.append((self.command, self.path))
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
                if m:
                    return self._info(m.group(1), m.group(2) or "main", head)
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    return self._file(m.group(1), m.group(2), m.group(3), head)
                self._send(404, b'{"error":"not found"}', {"Content-Type": "application/json"}, head)

            def _denied(self, repo, head):
                if repo not in hub.repos:
                    self._send(
                        404,
                        b'{"error":"Repository not found"}',
                        {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"},
                        head,
                    )
                    return True
                if repo in hub.gated and "authorization" not in {k.lower() for k in self.headers}:
                    self._send(
                        401,
                        b'{"error":"Access to model is restricted"}',
                        {
                            "X-Error-Code": "GatedRepo",
                            "X-Error-Message": "Access to model is restricted.",
                            "Content-Type": "application/json",
                        },
                        head,
                    )
                    return True
                return False

            def _info(self, repo, rev, head):
                if self._denied(repo, head):
                    return
                files = sorted(
                    {p.name for p in hub.repos[repo].iterdir() if p.is_file()} | set(hub.extra.get(repo, {}))
                )
                body = json.dumps(
                    {
                        "id": repo,
                        "modelId": repo,
                        "sha": hub.commits[repo],
                        "siblings": [{"rfilename": f} for f in files],
                    }
                ).encode()
                self._send(200, body, {"Content-Type": "application/json"}, head)

            def _file(self, repo, rev, name, head):
                if self._denied(repo, head):
                    return
                f = hub.repos[repo] / name
                extra = hub.extra.get(repo, {})
                if rev not in ("main", hub.commits[repo]) or not (f.is_file() or name in extra):
                    self._send(404, b'{"error":"Entry not found"}', {"X-Error-Code": "EntryNotFound"}, head)
                    return
                data = extra[name] if name in extra else f.read_bytes()
                etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                self._send(
                    200,
                    data,
                    {"X-Repo-Commit": hub.commits[repo], "ETag": etag, "Content-Type": "application/octet-stream"},
                    head,
                )

            def do_HEAD(self):
                self._route(True)

            def do_GET(self):
                self._route(False)

        return Handler
