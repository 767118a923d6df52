"""Data strings made safe in the HTML reports, and plotly.js packed small (drift and evaluate share them).

Every string that comes from data is untrusted: in a ``<script>`` element it goes through
:func:`script_json`, in plotly's text through :func:`plotly_text`, in HTML through :func:`esc`.
plotly.js (4.8 MB) travels gzip-compressed and base64-encoded (about 2.0 MB); the page unpacks it
with the browser's ``DecompressionStream``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import re

_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE_RE = re.compile("[<>&\u2028\u2029]")


def script_json(value: object) -> str:
    r"""``value`` as JSON that is safe inside a ``<script>`` element of an HTML page.

    ``<``, ``>``, ``&``, U+2028 and U+2029 become ``\uXXXX`` escapes: still the same JSON value,
    but no data string can close the script (``</script>``) or start a comment. Every script
    payload of a report goes through here.
    """
    return script_safe(json.dumps(value, ensure_ascii=False, allow_nan=False))


def script_safe(json_text: str) -> str:
    """JSON text (e.g. plotly's own serialisation) with the characters :func:`script_json` escapes escaped."""
    return _SCRIPT_UNSAFE_RE.sub(lambda m: _SCRIPT_UNSAFE[m.group(0)], json_text)


def plotly_text(value: object) -> str:
    """A data string for plotly's text (trace names, hover text, titles, ticks): its markup made inert.

    plotly renders text as a small HTML subset (``<b>``, ``<br>``, ``<a href>``, ...) and decodes
    ``&lt;``, ``&gt;`` and ``&amp;``, so escaping those three shows the string as it is.
    """
    return html.escape(str(value), quote=False)


def esc(value: object) -> str:
    """A data string for HTML text or an attribute value."""
    return html.escape(str(value), quote=True)


def gzip_base64(data: bytes) -> str:
    """``data`` gzip-compressed (level 9, no timestamp: the same bytes give the same text) and base64-encoded."""
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode("ascii")


@functools.lru_cache(maxsize=1)
def plotly_js_gzip_base64() -> str:
    """The installed plotly.js as :func:`gzip_base64` text: 1.96 MB instead of 4.8 MB (plotly.js 3)."""
    from plotly.offline import get_plotlyjs

    return gzip_base64(get_plotlyjs().encode("utf-8"))
