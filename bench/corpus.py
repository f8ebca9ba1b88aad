"""A realistic, reproducible analytics.js-like event corpus for the benchmarks.

Mix: 60% track (a dozen e-commerce and product events), 20% page, 8% identify,
5% screen, 4% group, 3% alias. Events carry the context analytics.js sends
(library, page, userAgent, ip, locale, campaign, device, os, screen),
nested properties, arrays of products, ISO timestamps, and type drift (a
price that is sometimes an integer, a quantity that is sometimes a string).
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

TRACK_EVENTS = (
    "Product Viewed",
    "Product Added",
    "Product Removed",
    "Cart Viewed",
    "Checkout Started",
    "Order Completed",
    "Coupon Applied",
    "Signed Up",
    "Signed In",
    "Video Playback Started",
    "Search Performed",
    "Experiment Viewed",
)
PATHS = ("/", "/pricing", "/docs/getting-started", "/blog/launch", "/cart", "/checkout")
BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
)


def _timestamps(rng: random.Random, base: datetime) -> dict[str, str]:
    moment = base + timedelta(seconds=rng.randint(0, 86_400), microseconds=rng.randint(0, 999_999))
    skew = timedelta(milliseconds=rng.randint(-5_000, 5_000))
    sent = moment + timedelta(milliseconds=rng.randint(10, 3_000))
    return {
        "timestamp": (moment + skew).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sentAt": (sent + skew).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def _context(rng: random.Random, path: str) -> dict[str, Any]:
    return {
        "library": {"name": "analytics.js", "version": "next-1.64.0"},
        "page": {
            "path": path,
            "referrer": "https://www.google.com/",
            "search": "",
            "title": "Acme - " + path.strip("/").title(),
            "url": "https://acme.example" + path,
        },
        "userAgent": rng.choice(BROWSERS),
        "ip": f"203.0.113.{rng.randint(1, 254)}",
        "locale": rng.choice(("en-US", "fr-FR", "de-DE")),
        "campaign": {"name": "autumn_sale", "source": "newsletter", "medium": "email"},
        "device": {"type": rng.choice(("mobile", "desktop")), "manufacturer": "Apple"},
        "os": {"name": "macOS", "version": "14.1"},
        "screen": {"width": 1440, "height": 900, "density": 2},
        "timezone": "Europe/Paris",
    }


def _product(rng: random.Random) -> dict[str, Any]:
    price = rng.choice((rng.randint(5, 500), round(rng.uniform(5, 500), 2)))  # INTEGER->FLOAT drift
    return {
        "product_id": f"sku-{rng.randint(1, 400)}",
        "name": rng.choice(("Widget", "Gadget", "Gizmo")),
        "price": price,
        "quantity": rng.choice((1, 2, 3, "1")),  # INTEGER->STRING drift, now and then
        "category": "Hardware",
    }


def make_event(rng: random.Random, base: datetime) -> dict[str, Any]:
    roll = rng.random()
    path = rng.choice(PATHS)
    event: dict[str, Any] = {
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128))),
        "context": _context(rng, path),
        "integrations": {},
        **_timestamps(rng, base),
    }
    if rng.random() < 0.6:
        event["userId"] = f"user-{rng.randint(1, 5000)}"
    if roll < 0.60:
        products = [_product(rng) for _ in range(rng.randint(0, 3))]
        event.update(
            type="track",
            event=rng.choice(TRACK_EVENTS),
            properties={
                "order_id": f"o-{rng.randint(1, 10**6)}",
                "revenue": round(rng.uniform(1, 900), 2),
                "currency": "USD",
                "products": products,
                "checkout": {"step": rng.randint(1, 4), "shipping": {"method": "ups"}},
                "coupon": rng.choice((None, "AUTUMN10")),
                "firstPurchase": rng.random() < 0.2,
                "experimentStartedAt": "2024-11-01T10:00:00.000Z",
            },
        )
    elif roll < 0.80:
        event.update(
            type="page",
            name=path.strip("/").title() or "Home",
            properties={
                "path": path,
                "referrer": "https://www.google.com/",
                "title": "Acme",
                "url": "https://acme.example" + path,
                "search": "",
            },
        )
    elif roll < 0.88:
        event["userId"] = f"user-{rng.randint(1, 5000)}"
        event.update(
            type="identify",
            traits={
                "email": f"person{rng.randint(1, 5000)}@example.com",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "plan": rng.choice(("free", "pro", "enterprise")),
                "logins": rng.randint(1, 300),
                "address": {"city": "Paris", "country": "FR", "postalCode": "75001"},
                "createdAt": "2023-05-04T12:00:00.000Z",
            },
        )
    elif roll < 0.93:
        event.update(type="screen", name="Home", properties={"variation": "blue", "index": 3})
    elif roll < 0.97:
        event.update(
            type="group",
            groupId=f"org-{rng.randint(1, 300)}",
            traits={"name": "Acme Inc", "employees": rng.randint(1, 5000), "industry": "Tech"},
        )
    else:
        event["userId"] = f"user-{rng.randint(1, 5000)}"
        event.update(type="alias", previousId=event["anonymousId"])
    return event


def generate(count: int, seed: int = 7) -> list[bytes]:
    """``count`` JSON lines (bytes, no newline) of the corpus."""
    rng = random.Random(seed)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    return [orjson.dumps(make_event(rng, base)) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    lines = generate(args.events, args.seed)
    data = b"\n".join(lines) + b"\n"
    if args.output:
        args.output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
