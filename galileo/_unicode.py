"""Only valid Unicode leaves the SDK: request bodies are UTF-8 JSON, lone surrogates become U+FFFD.

A Python ``str`` may hold code points U+D800..U+DFFF ("surrogates"), which are not characters: valid Unicode
text never contains them alone, and UTF-8 cannot encode them. They come from decoding bytes that were not
valid text with ``surrogateescape``, which Python does for file names (``os.fsdecode``, ``os.listdir``),
environment variables and command-line arguments on POSIX: a file named ``b"file \\xff"`` is
``"file \\udcff"``. Sent as they are (``json.dumps`` escapes them as ``\\udcff``, which JSON's grammar
allows), they make the receiving server fail when it decodes or stores the text; the SDK then took the API
for down, and a batch's good traces that shared the request were lost with the bad one.

Policy. Text is user data: never refused, never raised about. In a request body, every surrogate code point
in any string, key or value, at any depth, becomes one U+FFFD REPLACEMENT CHARACTER; everything else is sent
exactly as it was (a surrogate *pair* in a ``str``, two code points, becomes two U+FFFD, as each is
alone). Two keys of one object that differ only in their surrogates then become one key, sent twice; JSON
parsers keep the last, as they do for any repeated key. Configuration is not data: a project, log stream,
API key, URL or header that is not valid Unicode is a :class:`~galileo.exceptions.ConfigurationError` when
the configuration is resolved (see :mod:`galileo.config`, which uses :func:`has_surrogates`).

Where. Every write goes through :func:`utf8_json` (``Client.encode`` in :mod:`galileo._transport`), the one
place where a body, whatever built it (the schema's records, the decorator's text, a redaction hook's
result, a ``default=str`` fallback), becomes bytes; nothing on the logger's path changes. The encoder emits
UTF-8 (``ensure_ascii=False``) and ``str.encode`` is strict, so the encoding that every body needs anyway is
also the test: it fails only when a surrogate is present, and only then is the JSON text repaired (a
surrogate can only stand inside a JSON string: the rest of the text is ASCII) and encoded again. A body
without surrogates costs what it did before (the same C encoder, one ``str.encode``) and is smaller when it
holds non-ASCII text (three bytes for "€", not six for ``\\u20ac``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["REPLACEMENT", "has_surrogates", "utf8_json", "valid_text"]

#: What each surrogate code point becomes: U+FFFD REPLACEMENT CHARACTER.
REPLACEMENT: Final = "\ufffd"
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
#: Compact JSON, UTF-8 ready; objects JSON cannot hold are sent as their ``str`` (never raises on them).
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a surrogate code point (U+D800..U+DFFF): it is not valid Unicode."""
    return _SURROGATE.search(text) is not None


def valid_text(text: str) -> str:
    """``text`` with each surrogate code point replaced by U+FFFD (``text`` itself when it has none)."""
    return _SURROGATE.sub(REPLACEMENT, text)


def utf8_json(value: Any) -> bytes:
    """``value`` as compact JSON in UTF-8, each surrogate code point in its strings replaced by U+FFFD.

    Raises what ``json.JSONEncoder.encode`` raises (ValueError for a circular structure); never because of
    text.
    """
    text = _ENCODER.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # only a surrogate can fail: strict UTF-8 encodes every other code point
        return valid_text(text).encode("utf-8")
