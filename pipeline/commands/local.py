"""``opentrack local up|down|status|topic``: the local stack from the shell.

``up`` prints only export lines on stdout, so ``eval "$(opentrack local up)"`` points every
``opentrack`` command (through ``OPENTRACK_<OPTION>``) and every Google client at the stack.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from pipeline.commands.arguments import OneLineParser, parse_with_environment
from pipeline.localstack import (
    DEFAULT_PROJECT,
    STATE_FILE,
    LocalStack,
    LocalStackError,
    default_state_dir,
    environment,
    start,
    status,
    stop,
)


def describe(stack: LocalStack, state_dir: Path) -> str:
    if stack.pubsub_endpoint:
        pubsub = f"pubsub    {stack.pubsub_endpoint}  (pid {stack.pids[2]})"
    else:
        pubsub = f"pubsub    UNAVAILABLE: {stack.pubsub_unavailable}"
    return "\n".join(
        [
            f"bigquery  {stack.bigquery_endpoint}  (project {stack.project}, "
            f"storage API {stack.bigquery_grpc_endpoint}, pid {stack.pids[0]})",
            f"storage   {stack.storage_endpoint}  (pid {stack.pids[1]})",
            pubsub,
            f"state     {state_dir.resolve() / STATE_FILE}",
        ]
    )


def exports(stack: LocalStack) -> str:
    """Export lines; a missing Pub/Sub is said in a comment, which ``eval`` ignores."""
    lines = [f"export {k}={shlex.quote(v)}" for k, v in environment(stack).items()]
    if not stack.pubsub_endpoint:
        reason = " ".join(stack.pubsub_unavailable.split())
        lines.append(f"# PUBSUB_EMULATOR_HOST not set: Pub/Sub emulator unavailable: {reason}")
    return "\n".join(lines)


def create_topic(stack: LocalStack, name: str) -> tuple[str, str]:
    """Topic ``name`` and subscription ``name`` on the stack's Pub/Sub (kept if present)."""
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.api_core.exceptions import AlreadyExists
    from google.auth.credentials import AnonymousCredentials

    options = {"api_endpoint": stack.pubsub_endpoint}
    topic = f"projects/{stack.project}/topics/{name}"
    subscription = f"projects/{stack.project}/subscriptions/{name}"
    credentials = AnonymousCredentials()
    publisher = pubsub_v1.PublisherClient(credentials=credentials, client_options=options)
    try:
        publisher.create_topic(name=topic)
    except AlreadyExists:
        pass
    with pubsub_v1.SubscriberClient(credentials=credentials, client_options=options) as sub:
        try:
            sub.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
        except AlreadyExists:
            pass
    return topic, subscription


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog="opentrack local", description="BigQuery, GCS and Pub/Sub emulators on 127.0.0.1."
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    helps = {
        "up": "install if needed (first time: a few minutes), start, print the export lines",
        "down": "stop the servers (their data stays in the state dir)",
        "status": "print the endpoints and export lines; exit 1 when not running",
        "topic": "create a Pub/Sub topic and a subscription of the same name on the stack",
    }
    for action, text in helps.items():
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument(
            "--state_dir", type=Path, default=None,
            help="where the venvs, data, logs and state.json live "
            "(default: $OPENTRACK_LOCAL_STATE, else <repo>/.local-stack)",
        )  # fmt: skip
        if action == "up":
            sub.add_argument(
                "--project", default=DEFAULT_PROJECT,
                help=f"project id of BigQuery and Pub/Sub (default: {DEFAULT_PROJECT})",
            )  # fmt: skip
        if action == "topic":
            sub.add_argument("name", help="topic and subscription name, e.g. events")
    return parser


def main(argv: list[str]) -> int:
    args = parse_with_environment(_parser(), argv)
    state_dir: Path = args.state_dir or default_state_dir()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.action == "up":
            stack = status(state_dir)
            if stack is not None:
                print("already running", file=sys.stderr)
            else:
                stack = start(state_dir, args.project)
            print(describe(stack, state_dir), file=sys.stderr)
            print(exports(stack))
            return 0
        if args.action == "down":
            print("stopped" if stop(state_dir) else "not running", file=sys.stderr)
            return 0
        stack = status(state_dir)
        if stack is None:
            print("not running: start it with `opentrack local up`", file=sys.stderr)
            return 1
        if args.action == "topic":
            if not stack.pubsub_endpoint:
                print(f"opentrack local: no Pub/Sub: {stack.pubsub_unavailable}", file=sys.stderr)
                return 1
            topic, subscription = create_topic(stack, args.name)
            print(f"topic        {topic}\nsubscription {subscription}")
            return 0
        print(describe(stack, state_dir))
        print(exports(stack))
        return 0
    except LocalStackError as error:
        print(f"opentrack local: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
