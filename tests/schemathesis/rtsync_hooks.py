"""schemathesis hooks for tests/api_schemathesis.rs (loaded through SCHEMATHESIS_HOOKS).

The daemon under test runs in a network namespace of the test's own with only a loopback
interface, so whatever hosts the fuzzer invents, no packet leaves the machine. What is left to
confine is the file system: a Lakehouse data source's `root` is where the daemon creates and
deletes table files, so a generated root is moved under the test's sandbox directory (its text
kept, made relative), and generated webhooks point at a closed loopback port.
"""

import os
import re

import schemathesis

SANDBOX = os.environ["RTSYNC_FUZZ_SANDBOX"]
CLOSED_PORT_URL = "http://127.0.0.1:9/hook"


def _inside_sandbox(value: str) -> str:
    # Keep the generated text recognisable but harmless: no scheme, no "..", no leading "/".
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", value)[:60] or "root"
    return os.path.join(SANDBOX, cleaned)


def _confine(key, value):
    if isinstance(key, str) and isinstance(value, str) and key.lower().endswith("root"):
        return _inside_sandbox(value)
    return value


@schemathesis.hook
def map_case(context, case):
    body = case.body
    if isinstance(body, dict):
        props = body.get("properties")
        if isinstance(props, dict):
            body["properties"] = {k: _confine(k, v) for k, v in props.items()}
        if isinstance(body.get("webhook"), str):
            body["webhook"] = CLOSED_PORT_URL
    return case


@schemathesis.check
def error_is_one_line(ctx, response, case):
    """Every refusal names its reason in one line: {"error": {"code", "message"}}."""
    if not 400 <= response.status_code < 600:
        return None
    try:
        error = response.json()["error"]
    except Exception as exc:  # noqa: BLE001 - any shape but the documented one fails
        raise AssertionError(f"a {response.status_code} answer without an error body: {response.text[:200]!r}") from exc
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message.strip():
        raise AssertionError(f"a {response.status_code} answer without a message: {error!r}")
    if "\n" in message:
        raise AssertionError(f"a {response.status_code} answer's message spans lines: {message!r}")
    return None
