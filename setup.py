"""OpenTrack-Beam: Segment-spec analytics events into BigQuery, on Apache Beam."""

from setuptools import find_packages, setup

# Exact pins: the Flex Template image and the workers must run what CI tested.
# Transitive versions are pinned in constraints.txt (pip install -c constraints.txt).
INSTALL_REQUIRES = [
    # gcp: BigQuery, Pub/Sub, GCS; aws: Beam's S3 filesystem (Segment archives on s3://).
    "apache-beam[gcp,aws]==2.77.0",
    "google-cloud-bigquery==3.47.0",
    "google-cloud-pubsub==2.44.0",
    "google-cloud-storage==3.17.1",
    # Strict RFC 8259 parsing (rejects NaN/Infinity, lone surrogates, bad UTF-8)
    # and the fastest encoder for JSON-text columns: the hot path of the product.
    "orjson==3.13.0",
    # Schema contract files (opentrack schema check|plan|apply): YAML read strictly,
    # its structure declared once as pydantic models.
    "PyYAML==6.0.3",
    "pydantic==2.14.3",
]

TEST_REQUIRES = [
    "pytest==9.2.0",
    # Property-based tests of validation and normalization.
    "hypothesis==6.170.15",
    # The checks the test command runs (tests/test_checks.py; settings in pyproject.toml):
    # lint and format, types, and the layers' import contracts.
    "ruff==0.17.5",
    "mypy==2.4.1",
    "types-PyYAML==6.0.12.20261122",
    "import-linter==2.16",
]

LOCAL_REQUIRES = [
    # The GCS emulator of the local stack (`opentrack local up`, integration tests).
    # The BigQuery emulator needs Python 3.13 and lives in its own virtualenv,
    # pinned by pipeline/localstack/requirements.txt.
    "gcp-storage-emulator==2026.7.19",
    # A local S3 server for the s3:// tests (moto's server mode needs Flask).
    "moto[s3]==5.2.6",
    "flask==3.1.3",
    "flask-cors==6.0.5",
]

BENCH_REQUIRES = [
    # bench.end_to_end: the share of CPU samples inside Beam's per-row size check.
    "py-spy==0.4.3",
]

setup(
    name="opentrack-beam",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11",
    packages=find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*"]),
    package_data={"pipeline": ["samples/*.jsonl"], "pipeline.localstack": ["requirements.txt"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": TEST_REQUIRES + LOCAL_REQUIRES,
        "local": LOCAL_REQUIRES,
        "bench": BENCH_REQUIRES,
    },
    entry_points={"console_scripts": ["opentrack=pipeline.commands.cli:main"]},
)
