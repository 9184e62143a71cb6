"""GoogleSQL's string literals decoded by the documented rules (BigQuery, "Lexical structure
and syntax": quoted literals and escape sequences), to check SQL text the emulator would
take but BigQuery might not: the emulator drops the backslash of an unknown escape and
takes raw newlines inside quotes."""

import re

# GoogleSQL's escape sequences in string literals (BigQuery "Lexical structure and syntax",
# escape sequences): any other character after a backslash is an error.
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "?": "?",
    '"': '"',
    "'": "'",
    "`": "`",
}


def decode_string_literal(literal: str) -> str:
    """The value of a single-quoted GoogleSQL string literal, by the documented rules;
    ValueError for what BigQuery refuses."""
    if len(literal) < 2 or literal[0] != "'" or literal[-1] != "'":
        raise ValueError(f"not a single-quoted literal: {literal!r}")
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char in "\n\r":
            raise ValueError("quoted strings cannot contain newlines")
        if char == "'":
            raise ValueError(f"unescaped quote at {i}: the literal ends early")
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("string literal cannot end with \\")
        kind = body[i + 1]
        if kind in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[kind])
            i += 2
            continue
        if kind in "0123":  # exactly 3 octal digits, at most \377
            digits = body[i + 1 : i + 4]
            if not re.fullmatch("[0-3][0-7]{2}", digits):
                raise ValueError(f"bad octal escape \\{digits}")
            out.append(chr(int(digits, 8)))
            i += 4
            continue
        width = {"x": 2, "X": 2, "u": 4, "U": 8}.get(kind)
        if width is None:
            raise ValueError(f"illegal escape sequence \\{kind}")
        digits = body[i + 2 : i + 2 + width]
        if not re.fullmatch(f"[0-9A-Fa-f]{{{width}}}", digits):
            raise ValueError(f"\\{kind} needs {width} hex digits, got {digits!r}")
        code = int(digits, 16)
        if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            raise ValueError(f"\\{kind}{digits} is not a Unicode scalar value")
        out.append(chr(code))
        i += 2 + width
    return "".join(out)
