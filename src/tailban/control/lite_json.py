"""JSON for the command's short path, without the ``json`` module.

``json`` imports ``re``, and with it ``enum`` and the regex compiler: ~10 ms of a 25 ms
``tailban unban`` on a small machine. The short path sends a flat object of strings and
reads the daemon's answer; these few lines do both. Anything they cannot read raises
ValueError, and the caller falls back to ``json``.
"""

from __future__ import annotations

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
              "t": "\t"}
_NUMBER = frozenset("+-0123456789.eE")
_SPACE = " \t\n\r"


def dumps(obj: dict[str, object]) -> str:
    """A flat object of strings, booleans, None and ints (what commands send)."""
    parts = []
    for key, value in obj.items():
        parts.append(f"{_string(key)}:{_scalar(value)}")
    return "{" + ",".join(parts) + "}"


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        return dumps(value)
    raise ValueError(f"cannot send {type(value).__name__}")


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or "\ud800" <= char <= "\udfff":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def loads(text: str) -> object:
    """The value of a JSON document; ValueError when it is not one."""
    try:
        value, end = _value(text, _skip(text, 0))
    except IndexError:
        raise ValueError("truncated JSON") from None
    if _skip(text, end) != len(text):
        raise ValueError("text after the JSON value")
    return value


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def _value(text: str, at: int) -> tuple[object, int]:
    char = text[at]
    if char == "{":
        return _object(text, at + 1)
    if char == "[":
        return _array(text, at + 1)
    if char == '"':
        return _read_string(text, at + 1)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, at):
            return value, at + len(word)
    end = at
    while end < len(text) and text[end] in _NUMBER:
        end += 1
    number = text[at:end]
    if not number:
        raise ValueError(f"unexpected {char!r} at {at}")
    if any(c in number for c in ".eE"):
        return float(number), end
    return int(number), end


def _object(text: str, at: int) -> tuple[dict[str, object], int]:
    result: dict[str, object] = {}
    at = _skip(text, at)
    if text[at] == "}":
        return result, at + 1
    while True:
        if text[at] != '"':
            raise ValueError(f"expected a key at {at}")
        key, at = _read_string(text, at + 1)
        at = _skip(text, at)
        if text[at] != ":":
            raise ValueError(f"expected ':' at {at}")
        result[key], at = _value(text, _skip(text, at + 1))
        at = _skip(text, at)
        if text[at] == "}":
            return result, at + 1
        if text[at] != ",":
            raise ValueError(f"expected ',' or '}}' at {at}")
        at = _skip(text, at + 1)


def _array(text: str, at: int) -> tuple[list[object], int]:
    result: list[object] = []
    at = _skip(text, at)
    if text[at] == "]":
        return result, at + 1
    while True:
        value, at = _value(text, at)
        result.append(value)
        at = _skip(text, at)
        if text[at] == "]":
            return result, at + 1
        if text[at] != ",":
            raise ValueError(f"expected ',' or ']' at {at}")
        at = _skip(text, at + 1)


def _read_string(text: str, at: int) -> tuple[str, int]:
    out = []
    while True:
        quote = text.find('"', at)
        if quote < 0:
            raise ValueError("unterminated string")
        slash = text.find("\\", at, quote)
        plain = text[at:quote if slash < 0 else slash]
        if any(c < " " for c in plain):
            raise ValueError("control character in a string")
        out.append(plain)
        if slash < 0:
            break
        code = text[slash + 1]
        if code == "u":
            digits = text[slash + 2:slash + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"bad \\u escape at {slash}")
            out.append(chr(int(digits, 16)))
            at = slash + 6
        elif code in _UNESCAPES:
            out.append(_UNESCAPES[code])
            at = slash + 2
        else:
            raise ValueError(f"bad escape at {slash}")
    joined = "".join(out)
    if any("\ud800" <= c <= "\udfff" for c in joined):
        # \ud83d\ude00: two UTF-16 halves are one character; a lone half stays as it is
        joined = joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le",
                                                                    "surrogatepass")
    return joined, quote + 1
