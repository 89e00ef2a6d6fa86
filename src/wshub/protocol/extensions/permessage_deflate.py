"""permessage-deflate, the WebSocket compression extension (RFC 7692).

Memory is the cost that matters with many connections, so it is spelled out here. zlib
allocates, per stream:

* a compressor: ``2 ** (window_bits + 2) + 2 ** (mem_level + 9)`` bytes, i.e. 256 KiB
  with the zlib defaults (15 bits, level 8) and 32 KiB with 12 bits and level 5;
* a decompressor: ``2 ** window_bits`` bytes plus about 7 KiB.

Both are created on first use, so an idle connection costs nothing, and they are dropped
after each message when the negotiated parameters forbid context takeover.

On window bits 8: zlib refuses to create a raw-deflate compressor with 8 window bits, so
our compressor uses 9 when 8 is negotiated for it. That is still correct for the peer:
zlib never emits a match farther back than ``2 ** window_bits - 262`` bytes (its
``MAX_DIST``), which is 250 for 9 bits, inside the 256-byte window the peer allows.
Decompression always uses the window the peer may actually use.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import NamedTuple

from wshub.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from wshub.protocol.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
)
from wshub.protocol.headers import ExtensionParam

__all__ = [
    "ClientPerMessageDeflateFactory",
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
    "SharedDeflate",
    "client_deflate",
    "server_deflate",
]

_NAME = "permessage-deflate"
# RFC 7692 §7.2.1: a compressed message is the output of a sync flush minus this tail,
# which the receiver appends back (§7.2.2).
_EMPTY_BLOCK_TAIL = b"\x00\x00\xff\xff"
# RFC 7692 §7.1.2: window bits are a decimal integer from 8 to 15 without leading zeros.
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}
# How much zlib reads and writes per call while inflating: the memory held beyond
# max_size while a bomb is refused, against one Python-level call per 64 KiB.
_INFLATE_CHUNK = 2**16


def _check_bits(name: str, bits: int | None) -> None:
    if bits is not None and not 8 <= bits <= 15:
        raise ValueError(f"{name} must be between 8 and 15")


def _check_zlib_settings(compress_level: int, mem_level: int) -> None:
    if not -1 <= compress_level <= 9:
        raise ValueError("compress_level must be between -1 and 9")
    if not 1 <= mem_level <= 9:
        raise ValueError("mem_level must be between 1 and 9")


def _new_compressor(window_bits: int, compress_level: int, mem_level: int) -> zlib._Compress:
    # zlib refuses 8 window bits for raw deflate: 9 is served instead (module docstring).
    return zlib.compressobj(compress_level, zlib.DEFLATED, -max(9, window_bits), mem_level)


def _deflate_message(compressor: zlib._Compress, data: bytes) -> bytes:
    """One whole message through ``compressor``, ended on a sync flush (RFC 7692 §7.2.1)."""
    output = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    # A sync flush always ends with an empty stored block; its tail is implied.
    # An empty message leaves b"\x00", the form §7.2.3.6 describes.
    return output[:-4]


class SharedDeflate:
    """How every connection with the same server-side parameters compresses a message,
    when those parameters forbid context takeover (RFC 7692 §7.1.1.1).

    Without context takeover a compressed message refers to nothing sent before it, so
    its bytes do not depend on the connection: one compression serves every connection
    that negotiated the same window, level and memory level. There is one instance per
    set of parameters (:meth:`of`), so that it can key a cache by identity.
    """

    __slots__ = ("compress_level", "mem_level", "window_bits")

    _instances: dict[tuple[int, int, int], SharedDeflate] = {}

    def __init__(self, window_bits: int, compress_level: int, mem_level: int) -> None:
        self.window_bits = window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level

    @classmethod
    def of(cls, window_bits: int, compress_level: int, mem_level: int) -> SharedDeflate:
        """The one instance for these parameters."""
        key = (window_bits, compress_level, mem_level)
        shared = cls._instances.get(key)
        if shared is None:
            shared = cls._instances[key] = cls(*key)
        return shared

    def __repr__(self) -> str:
        return (
            f"SharedDeflate(window_bits={self.window_bits}, "
            f"compress_level={self.compress_level}, mem_level={self.mem_level})"
        )

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message with a fresh compressor (§7.2.1)."""
        compressor = _new_compressor(self.window_bits, self.compress_level, self.mem_level)
        return _deflate_message(compressor, data)


class PerMessageDeflate(Extension):
    """A negotiated permessage-deflate extension, one per connection.

    "Local" is our side (what we compress), "remote" the peer (what we decompress):
    on a server, local = server_* parameters and remote = client_* parameters.
    """

    __slots__ = (
        "_compressed_since_check",
        "_compressor",
        "_decompressor",
        "compress_level",
        "local_max_window_bits",
        "local_no_context_takeover",
        "mem_level",
        "remote_max_window_bits",
        "remote_no_context_takeover",
        "shared",
    )

    name = _NAME

    def __init__(
        self,
        *,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_level: int = 6,
        mem_level: int = 8,
    ) -> None:
        """Set the negotiated parameters.

        Args:
            remote_no_context_takeover: the peer resets its compressor after each
                message, so ours can drop its decompressor between messages.
            local_no_context_takeover: we must reset our compressor after each message.
            remote_max_window_bits: the largest window the peer compresses with; our
                decompressor uses it.
            local_max_window_bits: the largest window we may compress with (8 is
                served with 9, see the module docstring).
            compress_level: zlib level; 6 is zlib's own default, the knee of its
                speed/ratio curve: higher levels cost much more CPU for a few percent.
            mem_level: zlib memLevel, 1..9; 8 is zlib's default. Each step down halves
                the hash table (``2 ** (mem_level + 9)`` bytes) at a small cost in ratio.

        Raises:
            ValueError: a value is out of range.
        """
        _check_bits("remote_max_window_bits", remote_max_window_bits)
        _check_bits("local_max_window_bits", local_max_window_bits)
        _check_zlib_settings(compress_level, mem_level)
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._compressed_since_check = False
        #: How our messages are compressed when any connection with the same parameters
        #: would compress them to the same bytes (no context takeover), else ``None``.
        self.shared = (
            SharedDeflate.of(local_max_window_bits, compress_level, mem_level)
            if local_no_context_takeover
            else None
        )

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_max_window_bits={self.local_max_window_bits})"
        )

    def decompress(self, data: bytes, *, fin: bool, max_size: int | None) -> bytes:
        """Decompress one frame's payload of a compressed message (RFC 7692 §7.2.2).

        The whole output of the frame in one ``bytes``; :meth:`inflate` gives it in
        pieces, which is what the connection uses.

        Raises:
            PayloadTooBig: the output would exceed ``max_size``.
            ProtocolError: the data is not valid deflate data (code 1007).
        """
        return b"".join(self.inflate(data, fin=fin, max_size=max_size))

    def inflate(self, data: bytes, *, fin: bool, max_size: int | None) -> Iterator[bytes]:
        """Decompress one frame's payload in pieces of at most 64 KiB (RFC 7692 §7.2.2).

        Memory is bounded while a "bomb" is refused: zlib is never asked for more than
        one piece, and never for more than ``max_size + 1`` bytes in all, so the caller,
        which keeps the pieces in its message buffer, holds at most ``max_size`` plus one
        piece when the error comes. Asking zlib for the whole output at once would cost
        twice that: CPython's zlib builds it in blocks and then joins them.

        The input is fed in 64 KiB slices too, so that ``unconsumed_tail``, a copy of
        the input zlib has not read yet, stays small whatever the frame's size.

        Raises:
            PayloadTooBig: the output would exceed ``max_size``; raised before a piece
                that would cross it is yielded.
            ProtocolError: the data is not valid deflate data (code 1007).
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(
                wbits=-self.remote_max_window_bits
            )
        if fin:
            # join() copies rather than extending a buffer the caller may still own.
            data = b"".join((data, _EMPTY_BLOCK_TAIL))
        budget = max_size
        view = memoryview(data)
        try:
            for start in range(0, len(view), _INFLATE_CHUNK):
                pending: bytes | memoryview = view[start : start + _INFLATE_CHUNK]
                while True:
                    limit = _INFLATE_CHUNK if budget is None else min(_INFLATE_CHUNK, budget + 1)
                    output = decompressor.decompress(pending, limit)
                    if budget is not None:
                        budget -= len(output)
                        if budget < 0:
                            # The connection is failing: free the window now.
                            self._decompressor = None
                            raise PayloadTooBig("message too big after decompression")
                    if output:
                        yield output
                    if decompressor.eof:
                        break
                    pending = decompressor.unconsumed_tail
                    # A full piece may leave output inside zlib with no input left.
                    if not pending and len(output) < limit:
                        break
                if decompressor.eof:
                    break
        except zlib.error as exc:
            self._decompressor = None
            raise ProtocolError("invalid compressed data", 1007) from exc
        # A block with BFINAL set ends the deflate stream (RFC 7692 §7.2.3.4); the next
        # message then starts a new one. Otherwise, without context takeover the peer
        # starts afresh after each message and the window is no longer needed.
        if decompressor.eof or (fin and self.remote_no_context_takeover):
            self._decompressor = None

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message (RFC 7692 §7.2.1)."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = _new_compressor(
                self.local_max_window_bits, self.compress_level, self.mem_level
            )
        output = _deflate_message(compressor, data)
        self._compressed_since_check = True
        if self.local_no_context_takeover:
            self._compressor = None
        return output

    def release_idle(self) -> bool:
        """Drop the compressor if nothing was compressed since the last call.

        This is allowed even with context takeover: referring back to earlier messages
        is the compressor's option, not the peer's right (§7.2.1), and every message ends
        on a sync flush, so a new compressor's blocks simply continue the peer's inflate
        stream and never refer into its old window. A connection that has gone quiet then
        holds a few KiB instead of its compressor's ~30; the first message after it
        compresses a little worse. The decompressor stays: the peer may refer back.

        Returns:
            Whether a compressor was dropped.
        """
        if self._compressed_since_check:
            self._compressed_since_check = False
            return False
        if self._compressor is None:
            return False
        self._compressor = None
        return True


class _Params(NamedTuple):
    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    client_max_window_bits: int | None
    client_max_window_bits_present: bool


def _parse_params(params: list[ExtensionParam], *, offer: bool) -> _Params:
    """Check the parameters of an offer or a response (RFC 7692 §7.1).

    Raises:
        ValueError: an unknown or repeated parameter, or an invalid value.
    """
    seen: set[str] = set()
    server_nct = client_nct = client_bits_present = False
    server_bits: int | None = None
    client_bits: int | None = None
    for name, value in params:
        if name in seen:
            raise ValueError(f"repeated parameter {name}")
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            # §7.1.1: these parameters have no value.
            if value is not None:
                raise ValueError(f"{name} takes no value")
            if name == "server_no_context_takeover":
                server_nct = True
            else:
                client_nct = True
        elif name == "server_max_window_bits":
            if value not in _WINDOW_BITS:
                raise ValueError(f"invalid value for {name}")
            server_bits = _WINDOW_BITS[value]
        elif name == "client_max_window_bits":
            client_bits_present = True
            # §7.1.2.2: valueless in an offer ("I support it"), valued in a response.
            if value is None and offer:
                continue
            if value not in _WINDOW_BITS:
                raise ValueError(f"invalid value for {name}")
            client_bits = _WINDOW_BITS[value]
        else:
            raise ValueError(f"unknown parameter {name}")
    return _Params(server_nct, client_nct, server_bits, client_bits, client_bits_present)


class _FactoryBase:
    """The configuration shared by the server and client factories."""

    __slots__ = (
        "client_max_window_bits",
        "client_no_context_takeover",
        "compress_level",
        "mem_level",
        "server_max_window_bits",
        "server_no_context_takeover",
    )

    name = _NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
        compress_level: int = 6,
        mem_level: int = 8,
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        _check_bits("client_max_window_bits", client_max_window_bits)
        _check_zlib_settings(compress_level, mem_level)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}("
            f"server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_max_window_bits={self.server_max_window_bits}, "
            f"client_max_window_bits={self.client_max_window_bits})"
        )


class ServerPerMessageDeflateFactory(_FactoryBase, ServerExtensionFactory):
    """Accepts permessage-deflate offers on a server (RFC 7692 §7.1).

    The configuration states what we want; an offer is accepted whenever it is valid,
    and the response tightens it with our wishes:

    * ``server_no_context_takeover``: reset our compressor after each message (saves
      its memory between messages, costs ratio). Always granted when the client asks.
    * ``client_no_context_takeover``: ask the client to reset its compressor, so we can
      drop our decompressor between messages. Also sent whenever the client offered it.
    * ``server_max_window_bits``: the largest window we compress with; lowered further
      to the client's limit when it sets one.
    * ``client_max_window_bits``: the largest window we let the client use, which sizes
      our decompressor. It can be sent only if the client offered the parameter; if it
      did not, the offer is still accepted and the client may use 15 bits.
    """

    __slots__ = ()

    def accept(
        self, offer_params: list[ExtensionParam]
    ) -> tuple[list[ExtensionParam], PerMessageDeflate] | None:
        """Accept a valid offer, or decline it (``None``) when it is invalid.

        §7.1: a server must decline an offer with an unknown parameter, a repeated
        parameter or an invalid value.
        """
        try:
            offer = _parse_params(offer_params, offer=True)
        except ValueError:
            return None
        response: list[ExtensionParam] = []

        # §7.1.1.1: an offered server_no_context_takeover must be in the response.
        local_nct = offer.server_no_context_takeover or self.server_no_context_takeover
        if local_nct:
            response.append(("server_no_context_takeover", None))
        # §7.1.1.2: the server may send client_no_context_takeover, offered or not.
        remote_nct = offer.client_no_context_takeover or self.client_no_context_takeover
        if remote_nct:
            response.append(("client_no_context_takeover", None))

        # §7.1.2.1: an offered limit must be answered with a value at most that limit;
        # without an offered limit the server may still announce its own.
        local_bits = 15
        if offer.server_max_window_bits is not None:
            local_bits = min(offer.server_max_window_bits, self.server_max_window_bits or 15)
            response.append(("server_max_window_bits", str(local_bits)))
        elif self.server_max_window_bits is not None:
            local_bits = self.server_max_window_bits
            response.append(("server_max_window_bits", str(local_bits)))

        # §7.1.2.2: client_max_window_bits may be sent only if offered. A value in the
        # offer is the client's promise, so it sizes our decompressor even if unanswered.
        remote_bits = offer.client_max_window_bits or 15
        if offer.client_max_window_bits_present and self.client_max_window_bits is not None:
            remote_bits = min(remote_bits, self.client_max_window_bits)
            response.append(("client_max_window_bits", str(remote_bits)))

        extension = PerMessageDeflate(
            remote_no_context_takeover=remote_nct,
            local_no_context_takeover=local_nct,
            remote_max_window_bits=remote_bits,
            local_max_window_bits=local_bits,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
        )
        return response, extension


class ClientPerMessageDeflateFactory(_FactoryBase, ClientExtensionFactory):
    """Offers permessage-deflate from a client and checks the answer (RFC 7692 §7.1).

    * ``server_no_context_takeover``: ask the server to reset its compressor; a response
      without it is refused.
    * ``client_no_context_takeover``: we reset our compressor after each message
      (announced as a hint in the offer).
    * ``server_max_window_bits``: the largest window we let the server use; a response
      without it or above it is refused.
    * ``client_max_window_bits``: the largest window we compress with, sent as a hint.
      The parameter is always offered (valueless when this is ``None``) because we can
      honour any limit the server sets.
    """

    __slots__ = ()

    def offer(self) -> list[ExtensionParam]:
        """Return the parameters of our offer."""
        params: list[ExtensionParam] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        client_bits = self.client_max_window_bits
        params.append(("client_max_window_bits", None if client_bits is None else str(client_bits)))
        return params

    def accept(self, response_params: list[ExtensionParam]) -> PerMessageDeflate:
        """Check the server's answer to our offer and create the extension.

        Raises:
            NegotiationError: the response is invalid or does not honour our offer.
        """
        try:
            response = _parse_params(response_params, offer=False)
        except ValueError as exc:
            raise NegotiationError(f"invalid permessage-deflate response: {exc}") from None

        # §7.1.1.1: the server must confirm server_no_context_takeover if we asked.
        if self.server_no_context_takeover and not response.server_no_context_takeover:
            raise NegotiationError("server ignored server_no_context_takeover")
        # §7.1.2.1: the server must confirm a server_max_window_bits we asked for.
        remote_bits = response.server_max_window_bits
        if self.server_max_window_bits is not None and (
            remote_bits is None or remote_bits > self.server_max_window_bits
        ):
            raise NegotiationError("server ignored server_max_window_bits")

        # §7.1.2.2: the server's limit binds us; our own hint binds us anyway.
        local_bits = min(response.client_max_window_bits or 15, self.client_max_window_bits or 15)
        return PerMessageDeflate(
            remote_no_context_takeover=response.server_no_context_takeover,
            local_no_context_takeover=(
                response.client_no_context_takeover or self.client_no_context_takeover
            ),
            remote_max_window_bits=remote_bits or 15,
            local_max_window_bits=local_bits,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
        )


def server_deflate(*, shared: bool = False) -> ServerPerMessageDeflateFactory:
    """The server factory behind ``compression="deflate"`` and ``"deflate-shared"``.

    12-bit windows (4 KiB) and ``mem_level=5`` bring the compressor from 256 KiB to
    32 KiB and the decompressor from 39 KiB to 11 KiB per connection. WebSocket messages
    are mostly small, so a longer history rarely finds more matches: the ratio barely
    moves while a server holds eight times more connections in the same memory.

    Args:
        shared: answer every offer with ``server_no_context_takeover``, which §7.1.1.1
            lets a server do unasked: each message is then compressed on its own, and a
            message sent to many connections is compressed once for all of them
            (:class:`SharedDeflate`), at some cost in ratio for messages that repeat
            what the previous ones said.
    """
    return ServerPerMessageDeflateFactory(
        server_no_context_takeover=shared,
        server_max_window_bits=12,
        client_max_window_bits=12,
        mem_level=5,
    )


def client_deflate(*, shared: bool = False) -> ClientPerMessageDeflateFactory:
    """The client factory behind ``compression="deflate"`` and ``"deflate-shared"``.

    It makes the offer browsers make (``permessage-deflate; client_max_window_bits``),
    which lets the server choose every limit; a client holds few connections, so it
    keeps zlib's defaults.

    Args:
        shared: also offer ``server_no_context_takeover`` (and refuse a server that does
            not grant it): the server may then compress a broadcast once for all.
    """
    return ClientPerMessageDeflateFactory(server_no_context_takeover=shared)
