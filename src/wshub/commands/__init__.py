"""The ``wshub`` subcommands for people and shell scripts at a hub's door.

* ``wshub client URL``: an interactive WebSocket client for any server
  (:mod:`wshub.commands.client`);
* ``wshub sub URL CHANNEL...``: a hub channel's publications as JSON lines, and
  ``wshub pub URL CHANNEL DATA``: one publication (:mod:`wshub.commands.pubsub`).

They sit in the CLI layer, above the hub, and use only public interfaces: :func:`wshub.connect`,
:class:`~wshub.hub.client.HubClient` and the HTTP API. Errors and exit statuses are shared
(:mod:`wshub.commands.common`): one line on standard error, 2 for bad usage or input, 1 for a
server that cannot be reached or refuses.
"""

from __future__ import annotations

from typing import Any

from . import client, pubsub

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``client``, ``sub`` and ``pub`` to ``commands``, the subparsers of ``wshub``.

    Args:
        commands: what ``ArgumentParser.add_subparsers()`` returned; each added parser sets
            ``func``, which takes the parsed arguments and returns the exit status.
    """
    client.add_parser(commands)
    pubsub.add_parsers(commands)
