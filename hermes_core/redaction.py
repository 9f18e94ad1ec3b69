"""Keep secrets out of everything hermes-core prints, logs or answers.

Two layers, used at every egress point:

- **Structural**: :func:`redacted` copies settings-shaped data (``config show``, ``doctor``,
  ``mcp list``/``test``) with every secret replaced by ``***``: values of keys that end in
  ``key``, ``token``, ``secret``, ``password``, ``credential``, ``authorization`` or ``cookie``
  (plural too), every value under an ``env`` or ``headers`` table, URL userinfo
  (``http://user:pw@host`` → ``http://***@host``), URL query values whose name looks secret
  (``?api_key=…``, ``&sig=…``), and ``args`` items such as ``--api-key=…`` or the item after
  ``--token``.
- **By value**: :func:`secrets_in` gathers those same values (plus what ``*_key_env``-style
  settings and ``${VAR}`` header references point at in the environment); after
  :func:`register_secrets` (or :func:`register_settings`), :func:`scrub` replaces each of them
  wherever it appears in a text: log lines, provider errors, HTTP error bodies, replies.

Values shorter than :data:`MIN_SECRET_LENGTH` are masked structurally but not replaced by value,
so a short setting such as ``"1"`` cannot mangle ordinary text. What a formatter left of a
secret it cut short (``'sk-abc...xyz'``) is masked too, down to :data:`MIN_FRAGMENT_LENGTH`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
#: Shortest value :func:`scrub` replaces; shorter ones would hit ordinary words and numbers.
MIN_SECRET_LENGTH = 8

#: Settings keys whose value is a secret.
SECRET_KEY = re.compile(
    r"(?:key|token|secret|password|passwd|credential|authorization|cookie)s?$|(?:^|[_.-])auth$",
    re.IGNORECASE,
)
#: Settings keys that name an environment variable holding a secret (``api_key_env``).
SECRET_ENV_KEY = re.compile(
    r"(?:key|token|secret|password|passwd|credential)s?_env$", re.IGNORECASE
)
#: Tables whose every value is a secret (an MCP server's environment, HTTP headers).
SECRET_TABLES = frozenset({"env", "headers"})
#: Query parameter and command-line flag names that look secret (substring, any case).
SECRET_NAME = re.compile(r"key|token|secret|pass|pwd|sig|auth|credential|cookie", re.IGNORECASE)

#: A URL in running text; punctuation that ends a sentence or a clause is not part of it.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>`]*[^\s\"'<>`.,:;!?)\]}]", re.IGNORECASE)
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)([^/?#@]+)@", re.IGNORECASE)
_QUERY_PAIR = re.compile(r"([?&;])([^=&#;]+)=([^&#;]*)")
#: ``Bearer <token>`` (JWTs hold dots, base64 ends in ``=``; a sentence's full stop is not part).
_AUTH_SCHEME = re.compile(
    r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=:-]{7,}[A-Za-z0-9_~+/=-]", re.IGNORECASE
)
#: ``--flag=value`` / ``NAME=value`` in one item, and ``--flag value`` inside a longer one.
_ASSIGNED = re.compile(r"^(-{0,2}[\w.-]+)=(.+)$", re.DOTALL)
_INLINE_FLAG = re.compile(r"(?<!\S)(--?[\w.-]+)(=|\s+)(?!-)(\S+)")


#: Where a formatter may have cut a long value short: an ellipsis, or the quote closing a repr.
_CUT = re.compile(r"\.\.\.|…|['\"]")
#: Shortest piece of a cut-off secret that :func:`scrub` still masks next to such a cut.
MIN_FRAGMENT_LENGTH = 6


class _Secrets:
    """The registered secret values (longest first), and one compiled alternation of them."""

    def __init__(self) -> None:
        self._values: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        new = {v for value in values for v in _forms(value) if len(v) >= MIN_SECRET_LENGTH}
        with self._lock:
            if new <= set(self._values):
                return
            ordered = tuple(sorted(new.union(self._values), key=len, reverse=True))
            # Swapped in two assignments: a thread scrubbing meanwhile sees old or new ones.
            self._pattern = re.compile("|".join(map(re.escape, ordered)))
            self._values = ordered

    def scrub(self, text: str) -> str:
        pattern, values = self._pattern, self._values
        if pattern is None or not text:
            return text
        return _mask_fragments(pattern.sub(MASK, text), values)


def _mask_fragments(text: str, secrets: tuple[str, ...]) -> str:
    """Mask what is left of secrets a formatter cut short (pydantic's ``'sk-abc...xyz'``, a
    ``repr(text[:80])``): a secret's beginning right before an ellipsis or a closing quote,
    its end right after an ellipsis."""
    spans: list[tuple[int, int]] = []
    for cut in _CUT.finditer(text):
        for secret in secrets:
            start = _beginning_before(text, cut.start(), secret)
            if start is not None:
                spans.append((start, cut.start()))
            end = _end_after(text, cut.end(), secret) if cut.group() not in "'\"" else None
            if end is not None:
                spans.append((cut.end(), end))
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, position = [], 0
    for start, end in merged:
        pieces += [text[position:start], MASK]
        position = end
    return "".join(pieces) + text[position:]


def _beginning_before(text: str, cut: int, secret: str) -> int | None:
    """Where the longest beginning of ``secret`` that ends at ``cut`` starts, if any."""
    head = secret[:MIN_FRAGMENT_LENGTH]
    position = text.find(head, max(0, cut - len(secret)), cut)
    while position != -1:
        if secret.startswith(text[position:cut]):
            return position
        position = text.find(head, position + 1, cut)
    return None


def _end_after(text: str, cut: int, secret: str) -> int | None:
    """Where the longest end of ``secret`` that starts at ``cut`` ends, if any."""
    tail = secret[-MIN_FRAGMENT_LENGTH:]
    position = text.rfind(tail, cut, cut + len(secret))
    while position != -1:
        end = position + MIN_FRAGMENT_LENGTH
        if secret.endswith(text[cut:end]):
            return end
        position = text.rfind(tail, cut, end - 1)
    return None


def _forms(value: str) -> set[str]:
    """A secret as configured, and as it looks percent-encoded or decoded in a URL."""
    value = value.strip()
    return {value, quote(value, safe=""), unquote(value)} if value else set()


_registry = _Secrets()


def register_secrets(values: Iterable[object]) -> None:
    """Have :func:`scrub` replace each of ``values`` (those of 8 characters or more)."""
    _registry.add(str(value) for value in values if value is not None)


def register_settings(settings: Mapping[str, Any]) -> None:
    """Register every secret in settings-shaped data (see :func:`secrets_in`)."""
    register_secrets(secrets_in(settings))


def scrub(text: str) -> str:
    """``text`` with every registered secret value replaced by ``***``."""
    return _registry.scrub(text)


def redact_text(text: str) -> str:
    """:func:`scrub`, plus URL userinfo, secret-looking URL query values and
    ``Bearer …`` credentials masked: for log lines and command output."""
    text = _URL.sub(lambda match: _redact_url(match.group()), scrub(text))
    return _AUTH_SCHEME.sub(lambda match: f"{match.group(1)} {MASK}", text)


def _redact_url(url: str) -> str:
    url = _USERINFO.sub(rf"\1{MASK}@", url)

    def value(match: re.Match[str]) -> str:
        separator, name, _ = match.groups()
        return f"{separator}{name}={MASK}" if SECRET_NAME.search(name) else match.group()

    return _QUERY_PAIR.sub(value, url)


def url_secrets(text: str) -> list[str]:
    """The userinfo and secret-looking query values of every URL in ``text``."""
    found = []
    for url in _URL.findall(text):
        if userinfo := _USERINFO.match(url):
            found.append(userinfo.group(2))
            found.append(userinfo.group(2).partition(":")[2])
        found += [v for _, name, v in _QUERY_PAIR.findall(url) if SECRET_NAME.search(name)]
    return [value for value in found if value]


class _Redactor:
    """One walk over settings-shaped data: the masked copy, and every value it masked."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def copy(self, value: Any, key: str = "") -> Any:
        if isinstance(value, Mapping):
            if key.lower() in SECRET_TABLES or SECRET_KEY.search(key):
                return {k: self.mask(v, expand=True) for k, v in value.items()}
            return {k: self.copy(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            if key.lower() == "args":
                return self.args([str(item) for item in value])
            if SECRET_KEY.search(key):
                # Named entries (``{name = "alice", key_env = "..."}``) keep their names.
                return [self.copy(v) if isinstance(v, Mapping) else self.mask(v) for v in value]
            return [self.copy(v) for v in value]
        if SECRET_KEY.search(key):
            return self.mask(value)
        if isinstance(value, str):
            if SECRET_ENV_KEY.search(key):
                self.from_environment(value)
            return self.text(value)
        return value

    def mask(self, value: Any, *, expand: bool = False) -> Any:
        """``***`` for any value that is set; tables are masked leaf by leaf."""
        if isinstance(value, Mapping):
            return {k: self.mask(v, expand=expand) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(v, expand=expand) for v in value]
        if value is None or value == "":
            return value  # "not set" is worth seeing, and hides nothing
        self.found.append(str(value))
        if expand and isinstance(value, str) and "$" in value:
            self.found.append(os.path.expandvars(value))  # headers may say "Bearer ${TOKEN}"
        return MASK

    def from_environment(self, name: str) -> None:
        """The secret an ``*_env`` setting names; plural ones hold comma-separated values."""
        value = os.environ.get(name, "")
        self.found += [value, *(part.strip() for part in value.split(","))]

    def text(self, value: str) -> str:
        self.found += url_secrets(value)
        return redact_text(value)

    def args(self, items: list[str]) -> list[str]:
        """Command-line arguments with the values of secret-looking flags masked."""
        shown: list[str] = []
        after_flag = False
        for item in items:
            if after_flag and not item.startswith("-"):
                self.found.append(item)
                shown.append(MASK)
                after_flag = False
                continue
            assigned = _ASSIGNED.match(item)
            if assigned and SECRET_NAME.search(assigned.group(1)):
                self.found.append(assigned.group(2))
                shown.append(f"{assigned.group(1)}={MASK}")
                continue
            after_flag = item.startswith("-") and bool(SECRET_NAME.search(item))
            shown.append(self.text(_INLINE_FLAG.sub(self.inline_flag, item)))
        return shown

    def inline_flag(self, match: re.Match[str]) -> str:
        flag, separator, value = match.groups()
        if not SECRET_NAME.search(flag):
            return match.group()
        self.found.append(value.strip("'\""))
        return f"{flag}{separator}{MASK}"


def redacted(value: Any, key: str = "") -> Any:
    """A copy of settings-shaped ``value`` with every secret replaced by ``***``."""
    return _Redactor().copy(value, key)


def secrets_in(settings: Mapping[str, Any]) -> list[str]:
    """Every secret value :func:`redacted` would mask in ``settings``, plus the values of the
    environment variables that ``*_key_env``-style settings name."""
    redactor = _Redactor()
    redactor.copy(settings)
    return [value for value in redactor.found if value]
