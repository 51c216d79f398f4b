"""Issue 23's hostile-client tests: a real `omnitok serve` (tests.serve_server.Server) or the
console script, driven as an attacker would."""
