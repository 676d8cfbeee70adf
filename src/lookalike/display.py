"""How a catalogue's items are shown to shoppers: which metadata field is the title, the price, the link.

A shop's catalogue names its fields its own way (``name`` or ``title``, ``link`` or ``url``), so the page
does not guess from whatever field comes first: a :class:`Display` maps each role a product card has to a
metadata field. Without a setting, each role takes the first of its usual names that the catalogue has
(:data:`DEFAULT_FIELDS`). A shop sets it once with ``lookalike display`` (kept in the index as the note
``display``, so every server over the index shows the same) or per server with ``lookalike serve
--display title=FIELD,...``.

The display also hides what is not for shoppers: values such as the demo's "Not sure" and "Skip" labels
are left out of the filter choices (``hide``), so are whole fields a shop keeps for itself (``hide_fields``),
and fields that name one item each (title, link, and any ``id`` or ``*_id``) are never offered as filters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lookalike.errors import LookalikeError

NOTE = "display"
ROLES = ("title", "price", "currency", "url", "brand", "category", "image")
"""What a product card shows: its title, its price (in ``currency``: a metadata field, or a fixed code set
with ``currency=EUR``), a link to the product page, a brand and a category line, and the image to show
when the catalogue keeps a better one than the indexed file (a link)."""
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title", "name", "product_name"),
    "price": ("price", "sale_price"),
    "currency": ("currency", "price_currency"),
    "url": ("url", "link", "product_url", "href"),
    "brand": ("brand", "maker", "manufacturer"),
    "category": ("category", "label", "type"),
    "image": ("image_url",),
}
NOT_FILTERS = ("title", "url", "image", "currency")
"""Roles whose fields name one item each (offering them as a filter would list the catalogue), and the
currency, which goes with the price rather than being a choice of its own."""
CURRENCY_CODE_LENGTH = 3


@dataclass(frozen=True)
class Display:
    """Role -> metadata field, a fixed currency code, filter values to hide (field -> values) and fields
    never to offer as filters."""

    fields: dict[str, str] = field(default_factory=dict)
    currency_code: str | None = None
    hide: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hide_fields: tuple[str, ...] = ()

    def resolved(self, known: Iterable[str]) -> Display:
        """This display with every unset role given the first of its usual names the catalogue has."""
        present = set(known)
        fields = dict(self.fields)
        for role, names in DEFAULT_FIELDS.items():
            if role not in fields:
                found = next((name for name in names if name in present), None)
                if found is not None and found not in fields.values():
                    fields[role] = found
        return replace(self, fields=fields)

    def merged(self, override: Display) -> Display:
        """``override``'s settings over this one's (a server's ``--display`` over the index's note)."""
        return Display(
            fields=self.fields | override.fields,
            currency_code=override.currency_code or self.currency_code,
            hide=self.hide | override.hide,
            hide_fields=tuple(dict.fromkeys(self.hide_fields + override.hide_fields)),
        )

    def offers_filter(self, name: str) -> bool:
        """Whether ``name`` is a field shoppers may filter on (see the module docstring)."""
        if name in self.hide_fields or name == "id" or name.endswith("_id"):
            return False
        return name not in {self.fields[role] for role in NOT_FILTERS if role in self.fields}

    def shown_values(self, name: str, counts: Mapping[str, int]) -> dict[str, int]:
        """A field's value counts without its hidden values."""
        hidden = set(self.hide.get(name, ()))
        return {value: count for value, count in counts.items() if value not in hidden}

    def to_note(self) -> dict[str, Any]:
        note: dict[str, Any] = {
            "fields": self.fields,
            "hide": {key: list(values) for key, values in self.hide.items()},
            "hide_fields": list(self.hide_fields),
        }
        if self.currency_code:
            note["currency_code"] = self.currency_code
        return note

    def describe(self) -> list[str]:
        """One line per setting, for ``lookalike display``."""
        lines = [f"{role:<9} {self.fields[role]}" for role in ROLES if role in self.fields]
        if self.currency_code:
            lines.append(f"{'currency':<9} {self.currency_code} (fixed)")
        lines += [f"{'hidden':<9} {key}: {', '.join(values)}" for key, values in sorted(self.hide.items())]
        lines += [f"{'hidden':<9} {name} (the whole field)" for name in self.hide_fields]
        return lines or ["nothing set: every role takes its usual field name (see `lookalike display --help`)"]


def from_note(note: Mapping[str, Any] | None) -> Display:
    """The display kept in the index (a note written by :meth:`Display.to_note`); a malformed one is
    ignored role by role rather than failing the server that reads it."""
    if not isinstance(note, Mapping):
        return Display()
    raw_fields = note.get("fields")
    fields = {
        role: name
        for role, name in (raw_fields.items() if isinstance(raw_fields, Mapping) else ())
        if role in ROLES and isinstance(name, str) and name
    }
    raw_hide = note.get("hide")
    hide = {
        key: tuple(str(value) for value in values)
        for key, values in (raw_hide.items() if isinstance(raw_hide, Mapping) else ())
        if isinstance(values, list)
    }
    code = note.get("currency_code")
    raw_fields_hidden = note.get("hide_fields")
    hide_fields = tuple(str(name) for name in raw_fields_hidden) if isinstance(raw_fields_hidden, list) else ()
    return Display(fields, code if isinstance(code, str) and code else None, hide, hide_fields)


def parse_assignments(text: str | Iterable[str]) -> Display:
    """``title=name,price=cost,currency=EUR`` (or several such strings) to a display. ``currency`` takes a
    field name, or a three-letter code in capitals (``EUR``) for a catalogue priced in one currency."""
    fields: dict[str, str] = {}
    code: str | None = None
    for part in _parts(text):
        role, sep, name = (piece.strip() for piece in part.partition("="))
        if not sep or not name:
            raise LookalikeError(f"a display setting is ROLE=FIELD, got {part!r}")
        if role not in ROLES:
            raise LookalikeError(f"unknown display role {role!r}; the roles are {', '.join(ROLES)}")
        if role == "currency" and len(name) == CURRENCY_CODE_LENGTH and name.isalpha() and name.isupper():
            code = name
        else:
            fields[role] = name
    return Display(fields, code)


def parse_hidden(items: Iterable[str]) -> Display:
    """``label=Not sure`` (one value each, as a value may hold a comma) hides that value from the filter
    choices; a bare ``sender_id`` hides the whole field."""
    hide: dict[str, list[str]] = {}
    whole: list[str] = []
    for item in items:
        key, sep, value = (piece.strip() for piece in item.partition("="))
        if not key or (sep and not value):
            raise LookalikeError(f"a hidden value is FIELD=VALUE (or FIELD for the whole field), got {item!r}")
        if sep:
            hide.setdefault(key, []).append(value)
        else:
            whole.append(key)
    return Display(hide={key: tuple(values) for key, values in hide.items()}, hide_fields=tuple(whole))


def _parts(text: str | Iterable[str]) -> list[str]:
    texts = [text] if isinstance(text, str) else list(text)
    return [part for chunk in texts for part in chunk.split(",") if part.strip()]
