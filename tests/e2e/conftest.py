"""End-to-end tests through a real Postfix (tests/postfix.py) and Dovecot."""

import pytest

from tests.postfix import PostfixServer, postfix, postfix_mta  # noqa: F401 - fixtures for these tests
from tests.services import require_postgresql


@pytest.fixture
def mta(postfix_mta: PostfixServer, settings) -> PostfixServer:  # noqa: F811 - the fixture above
    """The emptied Postfix, its CA trusted by the product; PostgreSQL only
    (the dispatch's claims and limits are PostgreSQL's)."""
    require_postgresql()
    settings.SERVERS_EXTRA_CA_FILE = str(postfix_mta.ca_file)
    return postfix_mta
