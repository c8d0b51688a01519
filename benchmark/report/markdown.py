"""A ``document.Document`` as one Markdown file (images as ``data:`` URIs, so the file stands alone), or as a Marp deck
(``--format marp``: Marp's front matter, one slide per section and per sub-section)."""

from __future__ import annotations

import base64

from .document import Bullets, Document, Image, Section, Table, Text

MARP_FRONT_MATTER = """---
marp: true
theme: default
paginate: true
size: 16:9
style: |
  section { font-size: 18px; }
  table { font-size: 13px; }
  img { max-height: 480px; }
---
"""


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(block: Table) -> list[str]:
    lines = [f"**{block.caption}**", ""] if block.caption else []
    lines.append("| " + " | ".join(_escape(c) for c in block.columns) + " |")
    lines.append("|" + "---|" * len(block.columns))
    lines += ["| " + " | ".join(_escape(c.text) for c in row) + " |" for row in block.rows]
    if block.note:
        lines += ["", f"*{block.note}*"]
    return lines


def image(block: Image) -> list[str]:
    data = base64.b64encode(block.png).decode("ascii")
    lines = [f"![{block.alt}](data:image/png;base64,{data})"]
    return lines + ([f"*{block.caption}*"] if block.caption else [])


def blocks(section: Section, marp: bool = False) -> list[str]:
    """A section's lines; in a Marp deck a table or figure after another one starts a slide of its own."""
    heading = "#" * section.level + " " + section.title
    lines, shown = [heading, ""], False
    for block in section.blocks:
        if marp and isinstance(block, (Table, Image)):
            if shown:
                lines += ["---", "", f"{heading} (continued)", ""]
            shown = True
        if isinstance(block, Text):
            lines.append(block.text)
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items]
        elif isinstance(block, Table):
            lines += table(block)
        elif isinstance(block, Image):
            lines += image(block)
        lines.append("")
    return lines


def render(doc: Document, marp: bool = False) -> str:
    slide = ["", "---", ""] if marp else []
    lines = [MARP_FRONT_MATTER] if marp else []
    lines += [f"# {doc.title}", "", doc.subtitle, ""]
    for top in doc.sections:
        for section in top.walk():
            lines += slide + blocks(section, marp)
    return "\n".join(lines).rstrip() + "\n"
