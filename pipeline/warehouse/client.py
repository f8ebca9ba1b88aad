"""BigQuery client factory: endpoint override, credentials, retries, timeouts.

An endpoint (``--bigquery_endpoint``) points the client at an emulator or a
regional/private endpoint. Anonymous credentials are used only for a loopback
endpoint (the local emulator); anything else uses Application Default
Credentials, as the google-cloud libraries do, and so must be ``https://``: a
plain ``http://`` endpoint elsewhere would carry the tokens in clear.

Every request gets a timeout: the library's default is none at all, so a
server that accepts a connection and never answers would stall a worker
forever. A request past its timeout raises ``requests.Timeout``, which the
library's retry treats as transient and retries within ``RETRY``'s deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import google.auth
from google.api_core import exceptions
from google.api_core.retry import exponential_sleep_generator
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

# The library's retry already covers 429/5xx and BigQuery's rate-limit reasons
# (rateLimitExceeded, backendError, internalError...) with exponential backoff;
# only its deadline is ours.
RETRY = DEFAULT_RETRY.with_deadline(120.0)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Backoff between attempts after a 409/412 (another writer changed the resource first):
# full jitter, so writers that raced do not collide again in step; at most ~8 s over
# the 5 pauses of 6 attempts (bounds 0.25, 0.5, 1, 2, 4 s).
CONFLICT_BACKOFF_INITIAL_S = 0.25
CONFLICT_BACKOFF_MAX_S = 4.0
REQUEST_TIMEOUT_S = 60.0  # per HTTP request; --request_timeout_seconds


class _TimeoutSession(AuthorizedSession):
    """An authorized session that gives a request without a timeout ``default_timeout``."""

    def __init__(self, credentials: Credentials, default_timeout: float) -> None:
        super().__init__(credentials)
        self.default_timeout = default_timeout

    # The signature forwards every argument of requests' as it came; it only fills a
    # missing timeout, so repeating requests' long typed signature would add nothing.
    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


def conflict_backoff() -> Iterator[float]:
    """Pauses before each retry after a conflict: google-api-core's truncated exponential
    backoff with full jitter (the one its own retries use)."""
    return exponential_sleep_generator(
        CONFLICT_BACKOFF_INITIAL_S, CONFLICT_BACKOFF_MAX_S, multiplier=2.0
    )


def is_emulator(endpoint: str | None) -> bool:
    return bool(endpoint) and urlparse(endpoint).hostname in _LOOPBACK


def checked_endpoint(endpoint: str | None, flag: str = "--bigquery_endpoint") -> str | None:
    """``endpoint`` if it is safe to send credentials to, else ``ValueError``: an
    ``https://`` URL, or ``http://`` on a loopback address (the local emulator, which
    gets no credentials at all)."""
    if not endpoint:
        return None
    parsed = urlparse(endpoint)
    if parsed.scheme == "https" and parsed.hostname:
        return endpoint
    if parsed.scheme == "http" and parsed.hostname in _LOOPBACK:
        return endpoint
    if parsed.scheme == "http" and parsed.hostname:
        raise ValueError(
            f"{flag}={endpoint}: plain http:// is accepted only on a loopback "
            "address (127.0.0.1, localhost, [::1]); anywhere else use https://, so that "
            "credentials never travel in clear"
        )
    raise ValueError(
        f"{flag}={endpoint}: expected https://HOST[:PORT] (or "
        "http://127.0.0.1:PORT for a local emulator)"
    )


def make_client(
    project: str,
    endpoint: str | None = None,
    location: str | None = None,
    request_timeout: float = REQUEST_TIMEOUT_S,
) -> bigquery.Client:
    """A BigQuery client for ``project``, optionally at ``endpoint``, whose requests
    time out after ``request_timeout`` seconds unless a call sets its own."""
    endpoint = checked_endpoint(endpoint)
    options = {"api_endpoint": endpoint} if endpoint else None
    if is_emulator(endpoint):
        credentials: Credentials = AnonymousCredentials()
    else:
        credentials, _ = google.auth.default(scopes=bigquery.Client.SCOPE)
    return bigquery.Client(
        project=project,
        credentials=credentials,
        client_options=options,
        location=location,
        _http=_TimeoutSession(credentials, request_timeout),
    )


NotFound = exceptions.NotFound
Conflict = exceptions.Conflict
PreconditionFailed = exceptions.PreconditionFailed
