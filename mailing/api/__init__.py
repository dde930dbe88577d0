"""The HTTP API (README, "API"): REST over JSON for integrations such as a
CRM, one tenant per key. Every write calls the same services as the pages,
so every rule the pages obey (limits, port 25, quotas) holds here too."""
