"""Print a .env for local development: DEBUG on and fresh random keys."""

import secrets

from cryptography.fernet import Fernet

print("# Made by `make run` for local development. Never commit this file.")
print("DEBUG=1")
print(f"SECRET_KEY={secrets.token_urlsafe(50)}")
print(f"SECRETS_ENCRYPTION_KEYS={Fernet.generate_key().decode()}")
