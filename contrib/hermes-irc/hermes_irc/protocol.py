"""The IRC wire format (RFC 1459/2812): parse a line, build a command, fit text into lines.

Pure functions, no I/O, so each rule is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A protocol line is at most 512 bytes including the closing CR LF.
MAX_LINE_BYTES = 512
#: Channel name prefixes (RFC 2812 section 1.3).
CHANNEL_PREFIXES = "#&+!"
#: Longest ``user@host`` part a server may put in front of our messages, when we do not know
#: ours yet: a 10-character user name plus a 63-character host name.
WORST_CASE_USERHOST = 10 + 1 + 63

_FORBIDDEN = str.maketrans("", "", "\r\n\x00")


@dataclass(frozen=True)
class Line:
    """One received protocol line."""

    prefix: str
    command: str
    params: tuple[str, ...]

    @property
    def nick(self) -> str:
        """The sender's nick (``nick`` of ``nick!user@host``), or the server name."""
        return self.prefix.split("!", 1)[0]

    def param(self, index: int) -> str:
        """Parameter ``index``, or an empty string when the line has fewer."""
        return self.params[index] if index < len(self.params) else ""


def parse(raw: str) -> Line:
    """Parse ``[@tags] [:prefix] COMMAND [params] [:trailing]``; IRCv3 tags are dropped."""
    text = raw.rstrip("\r\n")
    if text.startswith("@"):
        text = text.partition(" ")[2]
    prefix = ""
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
    head, separator, trailing = text.partition(" :")
    parts = head.split()
    if not parts:
        return Line(prefix, "", ())
    params = [*parts[1:], trailing] if separator else parts[1:]
    return Line(prefix, parts[0].upper(), tuple(params))


def command(name: str, *params: str) -> bytes:
    """Encode one command; the last parameter is sent as trailing (it may hold spaces).

    CR, LF and NUL are removed from every parameter: a reply can never smuggle a second
    command onto the wire.
    """
    cleaned = [param.translate(_FORBIDDEN) for param in params]
    if cleaned:
        cleaned[-1] = ":" + cleaned[-1]
    return (" ".join([name, *cleaned]) + "\r\n").encode()


def is_channel(target: str) -> bool:
    """Whether ``target`` names a channel rather than a nick."""
    return bool(target) and target[0] in CHANNEL_PREFIXES


def addressed_text(text: str, nick: str) -> str | None:
    """The message without its ``nick:`` or ``nick,`` address, or None when the message is
    not addressed to ``nick``. Nicks compare case-insensitively."""
    head, rest = text[: len(nick)], text[len(nick) :]
    if head.lower() == nick.lower() and rest[:1] in (":", ","):
        return rest[1:].strip()
    return None


def payload_budget(nick: str, userhost: str | None, target: str) -> int:
    """Bytes of text that fit in one PRIVMSG to ``target``, as the server relays it to others:
    ``:nick!user@host PRIVMSG target :text\\r\\n`` must stay within 512 bytes."""
    userhost_bytes = len(userhost.encode()) if userhost else WORST_CASE_USERHOST
    overhead = len(f":{nick}! PRIVMSG {target} :\r\n".encode()) + userhost_bytes
    return MAX_LINE_BYTES - overhead


def split_text(text: str, budget: int, *, first_prefix: str = "") -> list[str]:
    """Cut ``text`` into IRC messages of at most ``budget`` UTF-8 bytes each.

    Each line of ``text`` starts a new message (blank lines are skipped, IRC cannot send
    them); a long line is cut at the last space that fits, or mid-word when a word alone is
    too long, never inside a UTF-8 character. ``first_prefix`` (``"alice: "``) is put before
    the first message and counts against its budget.
    """
    if budget - len(first_prefix.encode()) < 8:
        raise ValueError(f"a budget of {budget} bytes cannot carry text after {first_prefix!r}")
    messages: list[str] = []
    for line in text.translate(str.maketrans("", "", "\x00")).splitlines():
        rest = line.rstrip()
        while rest.strip():
            prefix = first_prefix if not messages else ""
            piece, rest = _cut(rest, budget - len(prefix.encode()))
            messages.append(prefix + piece)
    return messages


def _cut(text: str, budget: int) -> tuple[str, str]:
    """The longest head of ``text`` within ``budget`` bytes (preferring a space), and the rest."""
    if len(text.encode()) <= budget:
        return text, ""
    fits = text.encode()[:budget].decode(errors="ignore")  # drops a cut multi-byte character
    space = fits.rfind(" ")
    if space > 0:
        return fits[:space], text[space + 1 :].lstrip(" ")
    return fits, text[len(fits) :]
