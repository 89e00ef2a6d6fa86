"""Demo applications built on the hub's public API (the chat room page)."""
