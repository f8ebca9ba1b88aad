"""Checks a command makes before it builds a graph, so a wrong endpoint, project,
subscription or input pattern is one line within seconds instead of a traceback after
minutes of retries."""

from __future__ import annotations

import google.auth.exceptions
import requests
from apache_beam.io.filesystems import FileSystems
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry

from pipeline import localstack
from pipeline.warehouse.client import is_emulator, make_client

PROBE_SECONDS = 10.0
CREDENTIALS_HINT = (
    "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS "
    '(for the local stack: eval "$(opentrack local up)")'
)


class PreflightError(RuntimeError):
    """The run cannot start: what is wrong and what to do, in one line."""


def local_stack_hint() -> str:
    """What to do when Google's endpoint does not answer: name a running local stack."""
    stack = localstack.status(localstack.default_state_dir())
    if stack is None:
        return "check the network, or point --bigquery_endpoint at an emulator"
    return (
        f"a local stack is running at {stack.bigquery_endpoint}: set --bigquery_endpoint "
        'or OPENTRACK_BIGQUERY_ENDPOINT (eval "$(opentrack local up)")'
    )


def check_bigquery(project: str, endpoint: str | None, seconds: float = PROBE_SECONDS) -> None:
    """One dataset listing, retried for at most ``seconds``: the endpoint answers, and the
    project and credentials work."""
    where = endpoint or "bigquery.googleapis.com"
    try:
        client = make_client(project, endpoint, request_timeout=seconds / 2)
        retry = api_retry.Retry(predicate=_worth_retrying, timeout=seconds / 2, maximum=2.0)
        next(iter(client.list_datasets(max_results=1, retry=retry, timeout=seconds / 3)), None)
    except google.auth.exceptions.DefaultCredentialsError:
        raise PreflightError(f"no Google credentials found: {CREDENTIALS_HINT}") from None
    except (api_exceptions.Unauthorized, google.auth.exceptions.RefreshError) as error:
        raise PreflightError(
            f"BigQuery refused the credentials ({first_line(error)}): {CREDENTIALS_HINT}"
        ) from None
    except api_exceptions.Forbidden as error:
        raise PreflightError(
            f"no access to BigQuery project {project!r} ({first_line(error)}): check "
            "--bigquery_project and the account's roles (BigQuery Data Editor, Job User)"
        ) from None
    except api_exceptions.NotFound:
        raise PreflightError(
            f"BigQuery project {project!r} not found at {where}: check --bigquery_project"
        ) from None
    except (requests.exceptions.RequestException, api_exceptions.RetryError,
            api_exceptions.GoogleAPIError) as error:  # fmt: skip
        hint = "is `opentrack local up` running?" if is_emulator(endpoint) else local_stack_hint()
        raise PreflightError(
            f"BigQuery at {where} does not answer ({_kind(error)}): {hint}"
        ) from None


def _worth_retrying(error: Exception) -> bool:
    """A busy or restarting server, not a name that does not resolve or a refusal."""
    if isinstance(error, requests.exceptions.ConnectionError):
        return _kind(error) not in ("host name does not resolve", "connection refused")
    return api_retry.if_transient_error(error)


def check_input(patterns: str) -> None:
    """Each comma-separated pattern of ``--input`` matches at least one file."""
    names = [name.strip() for name in patterns.split(",") if name.strip()]
    try:
        results = FileSystems.match(names)
    except Exception as error:  # noqa: BLE001 - Beam raises BeamIOError for any scheme
        raise PreflightError(f"--input={patterns}: cannot be read ({first_line(error)})") from None
    empty = [name for name, result in zip(names, results, strict=True) if not result.metadata_list]
    if empty:
        raise PreflightError(
            f"--input={empty[0]} matches no file: check the path (quote a pattern with *)"
        )


def check_subscription(subscription: str, seconds: float = PROBE_SECONDS) -> None:
    """The subscription exists (on the emulator when PUBSUB_EMULATOR_HOST is set)."""
    import google.cloud.pubsub_v1 as pubsub_v1

    try:
        with pubsub_v1.SubscriberClient() as subscriber:
            subscriber.get_subscription(subscription=subscription, timeout=seconds)
    except api_exceptions.NotFound:
        raise PreflightError(
            f"--subscription={subscription} does not exist: create it (gcloud pubsub "
            "subscriptions create, or `opentrack local topic` on the local stack)"
        ) from None
    except google.auth.exceptions.DefaultCredentialsError:
        raise PreflightError(f"no Google credentials found: {CREDENTIALS_HINT}") from None
    except (api_exceptions.GoogleAPIError, ValueError) as error:
        raise PreflightError(
            f"--subscription={subscription}: Pub/Sub does not answer ({_kind(error)}); "
            'for the local stack set PUBSUB_EMULATOR_HOST (eval "$(opentrack local up)")'
        ) from None


def first_line(error: BaseException) -> str:
    """An error's message as one line of at most 200 characters."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _kind(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__ or error
    text = str(cause)
    if "Name or service not known" in text or "NameResolutionError" in text:
        return "host name does not resolve"
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(cause, (requests.exceptions.Timeout, api_exceptions.RetryError)):
        return f"no answer within {PROBE_SECONDS:.0f} s"
    return first_line(cause)
