"""hermes-core platform ``irc``: answer on IRC channels and in private messages.

Install the distribution and enable it::

    pip install ./contrib/hermes-irc

    [platforms.irc]
    enabled = true
    server = "irc.libera.chat"
    nick = "hermes-bot"
    channels = ["#my-channel"]

The entry point (group ``hermes_core``) names this module; importing it costs nothing, the
client is imported only when the platform is enabled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hermes_core import hookimpl
from hermes_core.platforms import Platform, RegisterPlatform

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway

NAME = "irc"


def create_platform(gateway: Gateway, settings: Mapping[str, Any]) -> Platform:
    """The adapter factory: build an :class:`~hermes_irc.platform.IrcPlatform`."""
    from hermes_irc.platform import IrcPlatform

    return IrcPlatform(gateway, settings)


@hookimpl
def register_platforms(register: RegisterPlatform) -> None:
    """Offer the ``irc`` platform; it starts when ``platforms.irc.enabled = true``."""
    register(NAME, create_platform)
