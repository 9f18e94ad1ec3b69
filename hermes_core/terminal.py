"""Text from users and models, made safe to print on a terminal.

A terminal obeys the control characters it is sent: ESC starts sequences that move the
cursor, rewrite the window title, or (in some emulators) write files; C1 controls such as
U+009B (CSI) do the same in one character; BEL rings. Transcripts and replies hold text that
anyone who can send a message chose, so everything printed from them goes through
:func:`visible`.
"""

from __future__ import annotations

#: Every C0 control but newline and tab, DEL, and every C1 control, each to ``\\xNN``.
_VISIBLE = {
    code: f"\\x{code:02x}"
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))
    if chr(code) not in "\n\t"
}


def visible(text: str) -> str:
    r"""``text`` with its control characters written out, e.g. ESC as ``\x1b``; newlines
    and tabs are kept. Only for display: the stored text stays as it was."""
    return text.translate(_VISIBLE)
