"""BigQuery client factory: endpoint override, credentials, retries.

An endpoint (``--bigquery_endpoint``) points the client at an emulator or a
regional/private endpoint. Anonymous credentials are used only for a loopback
endpoint (the local emulator); anything else uses Application Default
Credentials, as the google-cloud libraries do.
"""

from __future__ import annotations

from urllib.parse import urlparse

from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

# The library's retry already covers 429/5xx and BigQuery's rate-limit reasons
# (rateLimitExceeded, backendError, internalError...) with exponential backoff;
# only its deadline is ours.
RETRY = DEFAULT_RETRY.with_deadline(120.0)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_emulator(endpoint: str | None) -> bool:
    return bool(endpoint) and urlparse(endpoint).hostname in _LOOPBACK


def make_client(
    project: str, endpoint: str | None = None, location: str | None = None
) -> bigquery.Client:
    """A BigQuery client for ``project``, optionally at ``endpoint``."""
    options = {"api_endpoint": endpoint} if endpoint else None
    credentials = AnonymousCredentials() if is_emulator(endpoint) else None
    return bigquery.Client(
        project=project, credentials=credentials, client_options=options, location=location
    )


NotFound = exceptions.NotFound
Conflict = exceptions.Conflict
PreconditionFailed = exceptions.PreconditionFailed
