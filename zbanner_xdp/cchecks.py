"""Build-time checks that the C and Python halves of a shared definition agree.

C defines its constants, enums and structs; the Python module that mirrors
them passes their expected values and layouts to the compiler as one -D
macro of _Static_asserts, which the C source expands after its definitions.
A drift on either side is then a compile error, never a garbled record. The
XDP programs (events.py, lab/emulator.py) and the record formatter
(fastfmt.py) all build their checks here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def values(expected: Mapping[str, int], origin: str) -> list[str]:
    """One assert per C constant (a #define or an enum member) that `expected` gives a value."""
    return [
        f'_Static_assert({name} == {value}, "{name} differs from {origin}");'
        for name, value in expected.items()
    ]


def layout(struct: str, size: int, offsets: Iterable[tuple[str, int]], origin: str) -> list[str]:
    """Asserts of `struct`'s size and of every member's offset."""
    checks = [f'_Static_assert(sizeof(struct {struct}) == {size}, "{struct} size differs from {origin}");']
    checks += [
        f"_Static_assert(__builtin_offsetof(struct {struct}, {name}) == {offset}, "
        f'"{struct}.{name} offset differs from {origin}");'
        for name, offset in offsets
    ]
    return checks


def define(macro: str, checks: list[str]) -> str:
    """The -D flag carrying `checks` as `macro`, which the C source expands after its definitions."""
    return f"-D{macro}={' '.join(checks)}"
