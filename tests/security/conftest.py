"""Issue 23's hostile-client tests: a real `omnitok serve` (tests.serve_server.Server) or the
console script, driven as an attacker would."""

import pytest

from tests.mock_providers import MockProviders


@pytest.fixture(scope="module")
def mock():
    """The providers' count APIs on 127.0.0.1 (tests.mock_providers), one per module."""
    m = MockProviders()
    yield m
    m.close()
