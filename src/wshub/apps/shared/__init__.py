"""What every demo page shares: ``static/ui.css`` (palette, light and dark themes, the top bar
with the links between pages, the connection status pill and banner) and ``static/ui.js``
(the hub's WebSocket URL and the connection display), served by
:func:`wshub.apps.static.page_routes` with ``shared=``."""
