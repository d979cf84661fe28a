"""Secrets never reach a log line, whatever path renders them; tenant-chosen values cannot hide our words.

Every test logs through the handler :func:`mcmp.worker.logs.configure` installs (JSON and text),
with real exceptions raised and caught, and reads what the handler wrote.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest

from mcmp.connectors.tenant_fetch.refusals import Rule, refused
from mcmp.worker import logs, redaction


@pytest.fixture(params=[True, False], ids=["json", "text"])
def output(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """What the process's own log handler writes, in JSON or text form."""
    logs.configure("INFO", json_output=request.param)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs._Handler))
    stream = io.StringIO()
    handler.setStream(stream)
    yield stream
    handler.setStream(io.StringIO())


def token() -> str:
    value = "EAAG" + secrets.token_urlsafe(24)
    redaction.register_secret(value)
    return value


class UpstreamError(Exception):
    pass


def test_a_token_inside_an_exception_and_its_chain_is_masked(output: io.StringIO) -> None:
    log = logging.getLogger("mcmp.worker.publishing.pipeline")
    first, second, third = token(), token(), token()
    try:
        try:
            try:
                raise UpstreamError(f"refresh answered 400 for {first}")
            except UpstreamError as exc:
                raise ValueError(f"token {second} refused") from exc
        except ValueError:
            raise RuntimeError(f"while handling: {third}")  # noqa: B904 - the implicit __context__ is the point
    except RuntimeError:
        log.exception("attempt ended without an outcome")
    text = output.getvalue()
    for value in (first, second, third):
        assert value not in text
    assert text.count(redaction.MASK) >= 3
    # the traceback is still there, all three exceptions, and our words untouched
    assert "UpstreamError" in text and "ValueError" in text and "RuntimeError" in text
    assert "attempt ended without an outcome" in text


def test_a_token_in_arguments_stack_and_extra_fields_is_masked(output: io.StringIO) -> None:
    log = logging.getLogger("mcmp.worker.accounts.tokens")
    value = token()
    log.warning("refresh failed: %s (%r)", value, {"access_token": value}, stack_info=True)
    log.error("delivery failed", extra={"detail": f"answer: {value}", "headers": {"auth": value}})
    log.error(UpstreamError(f"library error {value}"))
    logging.getLogger("httpx").info(f"pre-formatted by a library {value}")  # noqa: G004
    with logs.log_context(delivery_id="d1", note=f"context {value}"):
        log.info("done")
    text = output.getvalue()
    assert value not in text
    assert "refresh failed" in text and "Stack (most recent call last)" in text
    assert "pre-formatted by a library [REDACTED]" in text


def test_a_token_is_masked_when_the_formatter_renders_exc_info_itself(output: io.StringIO) -> None:
    """python-json-logger formats ``exc_info`` again: cleaning ``exc_text`` alone is not enough."""
    value = token()
    try:
        raise PermissionError(value)
    except PermissionError as exc:
        record = logging.LogRecord(
            "mcmp.x", logging.ERROR, __file__, 1, "failed", None, (type(exc), exc, None)
        )
        logging.getLogger("mcmp.x").handle(record)
    assert value not in output.getvalue() and "PermissionError" in output.getvalue()


# --- tenant-chosen secrets ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "chosen",
    [
        "refused a tenant URL",  # words of our log messages
        "a private address",
        "169.254.169.254",  # an address (shorter than 16 characters)
        "2001:db8:85a3::8a2e:370:7334",  # an address of any length
        "https://media.example/x.jpg",
        "aaaaaaaaaaaaaaaaaaaaaaaa",  # too little entropy
        "short",
    ],
)
def test_a_tenant_secret_that_is_our_words_or_an_address_hides_nothing(
    output: io.StringIO, chosen: str
) -> None:
    redaction.register_secret(chosen)
    refused("assetUrls[0]", "https://media.example/x.jpg resolves to a private address", Rule.PRIVATE)
    logging.getLogger("mcmp.connectors").warning("refused a tenant URL at %s", "169.254.169.254")
    logging.getLogger("mcmp.connectors").warning("aaaaaaaaaaaaaaaaaaaaaaaa short")
    text = output.getvalue()
    assert redaction.MASK not in text
    assert "refused a tenant URL (private): assetUrls[0]: https://media.example/x.jpg" in text
    assert "resolves to a private address" in text and "169.254.169.254" in text


def test_a_strong_secret_in_a_template_of_ours_is_not_masked_but_is_in_data(output: io.StringIO) -> None:
    """Matching is per record part: our template is never rewritten, data always is."""
    chosen = "Refused-Tenant-URL-2024"
    redaction.register_secret(chosen)
    logging.getLogger("mcmp.connectors").warning("Refused-Tenant-URL-2024 marker, value %s", chosen)
    line = output.getvalue()
    assert line.count(chosen) == 1 and "value [REDACTED]" in line


def test_a_secret_is_masked_only_as_a_whole_token(output: io.StringIO) -> None:
    chosen = "Wp4pp-Pa55word-X"
    redaction.register_secret(chosen)
    logging.getLogger("mcmp.x").info("seen %s and %s and %s", f"{chosen}Y", f"Z{chosen}", f"({chosen})")
    text = output.getvalue()
    assert f"{chosen}Y" in text and f"Z{chosen}" in text and "([REDACTED])" in text


def test_the_list_is_bounded_and_a_line_costs_the_same_with_many_secrets() -> None:
    index = redaction.SecretIndex(capacity=1000)
    values = [secrets.token_urlsafe(18) for _ in range(5000)]
    for value in values:
        index.add(value)
    assert len(index) == 1000
    assert index.scrub(f"x {values[-1]} y") == f"x {redaction.MASK} y"  # newest kept
    assert index.scrub(f"x {values[0]} y") == f"x {values[0]} y"  # oldest dropped
    # a line is scanned once for runs of token characters and each run looked up: only values
    # anchored on a run of the line are checked, however many are registered
    line = "delivery 0123 published; " * 400 + values[-1]
    assert index.candidates(line) == [values[-1]]
