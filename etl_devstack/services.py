"""What the test harness may do when a configured service does not answer.

Locally, a missing PostgreSQL, Redis or MariaDB is replaced by a private one the harness starts, with one
line saying so. CI sets ETL_TEST_REQUIRE_SERVICES=1: there a service that does not answer is a broken CI
machine, and the tests must fail naming the URL rather than quietly run against a stand-in.
"""

from __future__ import annotations

import os
import warnings

from etl_devstack.urls import redact_url

REQUIRE_SERVICES_ENV = "ETL_TEST_REQUIRE_SERVICES"


# Every announcement this process made, in order: the test session prints them in its terminal summary,
# where no warning filter (-p no:warnings, --disable-warnings, -W ignore) can hide them.
announced: list[str] = []


class ServiceFallbackWarning(UserWarning):
    """A configured service did not answer and a private/embedded one was started instead."""


def services_required() -> bool:
    """True when ETL_TEST_REQUIRE_SERVICES=1: the configured services must answer, no fallback."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip() == "1"


def require_or_fall_back(service: str, env_var: str, url: str) -> None:
    """Called when `url` (from `env_var`) did not answer, before starting a private `service`:
    raises RuntimeError naming the URL when services are required."""
    if services_required():
        raise RuntimeError(
            f"{service} at {env_var}={redact_url(url)} does not answer, and {REQUIRE_SERVICES_ENV}=1 forbids "
            f"starting a private one: start the service or fix {env_var}"
        )


def announce_fallback(service: str, url: str, started: str) -> None:
    """The one line saying a private server replaced the configured one (a warning: pytest lists it
    in its summary, a script prints it on stderr)."""
    message = f"{service} at {redact_url(url)} does not answer: using {started} instead"
    announced.append(message)
    warnings.warn(message, ServiceFallbackWarning, stacklevel=3)
