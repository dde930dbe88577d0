"""End-to-end tests through a real Postfix (tests/postfix.py) and Dovecot."""

from tests.postfix import postfix, postfix_mta  # noqa: F401 - fixtures for these tests
