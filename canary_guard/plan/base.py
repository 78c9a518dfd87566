"""Shared pieces of the plan model: the base model, name, text and duration types, the plan error.

Plan strings reach generated files (rules, Alertmanager, Kubernetes), PromQL, HTTP headers and
argv lists. The generators serialise and escape them; the types below also refuse, with the
field's path, values that could only be mistakes there (a newline in a job name or a file path,
an environment variable name with a space, a URL with whitespace).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from canary_guard.durations import parse_duration

DEFAULT_PLAN = "recoveryos.yaml"

NAME_RE = r"^[a-z][a-z0-9_]*$"
ALERT_RE = r"^[A-Z][A-Za-z0-9]*$"
ENV_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
HTTP_TOKEN_RE = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # RFC 9110 token: header names, auth schemes

# control, format, separator, surrogate, private and unassigned code points
_NOT_TEXT = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
# what RFC 3986 allows in a URL, besides %XX escapes
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]")


def _one_line(value: str) -> str:
    for ch in value:
        if unicodedata.category(ch) in _NOT_TEXT:
            raise ValueError(f"must be one line of printable text (found U+{ord(ch):04X})")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


def check_url(value: str) -> str:
    """An http(s) URL as Go's net/url (Prometheus, Alertmanager) and Python both read it."""
    example = "such as https://host:port/path"
    for i, ch in enumerate(value):
        if ch == "%":
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", value[i + 1:i + 3]):
                raise ValueError(f"must be an http:// or https:// URL {example}: "
                                 f"'%' (character {i + 1}) does not start a %XX escape")
        elif not _URL_CHARS.fullmatch(ch):
            raise ValueError(f"must be an http:// or https:// URL {example}: {ch!r} (character {i + 1}) "
                             "is not allowed in a URL (percent-encode it)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError as err:
        raise ValueError(f"must be an http:// or https:// URL {example}: {err}") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"must be an http:// or https:// URL {example}")
    if not (re.fullmatch(r"[a-z0-9.\-]+", host) or re.fullmatch(r"[0-9a-f:.]*:[0-9a-f:.]*", host)):
        raise ValueError(f"must be an http:// or https:// URL {example}: bad host {host!r}")
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[str, Field(pattern=NAME_RE, max_length=63)]
# one line of printable text: job names, file paths
Line = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_one_line)]
Url = Annotated[str, Field(max_length=4096), AfterValidator(check_url)]


def _matching(pattern: str, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not {what}")
        return value
    return AfterValidator(check)


EnvName = Annotated[str, Field(max_length=255), _matching(
    ENV_RE, "an environment variable name (letters, digits and _, not starting with a digit)")]
HttpToken = Annotated[str, Field(max_length=255), _matching(
    HTTP_TOKEN_RE, "an HTTP token (letters, digits and !#$%&'*+.^_`|~-, no spaces)")]


# Kubernetes object names as the API server accepts them (DNS-1123). Checked here because they
# reach kubectl's argv: a name such as "--all" would be read as a flag.
def _k8s_name(pattern: str, limit: int, what: str) -> AfterValidator:
    def check(v: str) -> str:
        if len(v) > limit or not re.fullmatch(pattern, v):
            raise ValueError(f"{v!r} is not a Kubernetes {what}: lowercase letters, digits and '-'"
                             f"{' and .' if '.' in pattern else ''}, starting and ending with a letter or "
                             f"digit, at most {limit} characters")
        return v
    return AfterValidator(check)


K8sName = Annotated[str, _k8s_name(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", 253, "object name")]
K8sNamespace = Annotated[str, _k8s_name(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", 63, "namespace")]


class PlanError(Exception):
    """A plan that cannot be used. ``problems`` holds one "path: message" line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid plan:\n" + "\n".join(f"  {p}" for p in problems))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
