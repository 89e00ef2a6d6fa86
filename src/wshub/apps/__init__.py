"""Demo applications built on the hub's public API: the chat room and the live prices pages."""
