"""A small reader of the report's HTML for tests (stdlib only): tables with their cells'
attributes and text, embedded images, section ids, banners."""

import base64
import io
from html.parser import HTMLParser


class Page(HTMLParser):
    """Collects every <td>/<th> with its attributes and text, grouped by the enclosing table
    id and tbody, plus <img> sources, <section> ids and banner paragraphs."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.cells = []  # dicts: table, tbody (its attrs), attrs, text, tag
        self.images, self.sections, self.banners = [], [], []
        self._table, self._tbody, self._cell, self._banner = [], {}, None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table.append(attrs.get("id"))
        elif tag == "tbody":
            self._tbody = attrs
        elif tag in ("td", "th"):
            self._cell = {
                "table": self._table[-1] if self._table else None,
                "tbody": self._tbody,
                "attrs": attrs,
                "text": "",
                "tag": tag,
            }
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "p" and "banner" in attrs.get("class", ""):
            self._banner = {"class": attrs["class"], "text": ""}

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()
        elif tag == "tbody":
            self._tbody = {}
        elif tag in ("td", "th") and self._cell is not None:
            self._cell["text"] = " ".join(self._cell["text"].split())
            self.cells.append(self._cell)
            self._cell = None
        elif tag == "p" and self._banner is not None:
            self._banner["text"] = " ".join(self._banner["text"].split())
            self.banners.append(self._banner)
            self._banner = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._banner is not None:
            self._banner["text"] += data

    def table(self, table_id):
        return [c for c in self.cells if c["table"] == table_id]


def decode_png(uri):
    """A data:image/png URI -> PIL image (RGB)."""
    from PIL import Image

    assert uri.startswith("data:image/png;base64,"), uri[:40]
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
