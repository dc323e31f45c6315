"""The HTTP client of the Amplemarket email-validation API: requests, answers, retries."""

DEFAULT_BASE_URL = "https://api.amplemarket.com"
"""Where the API lives; `--base-url` points elsewhere (a proxy, the fake API)."""
