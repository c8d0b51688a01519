"""A ``document.Document`` as one self-contained HTML file: inline CSS, images as base64 ``data:`` URIs, no script,
font or style from the network, and a few lines of inline JavaScript that sort a table by the column clicked (on each
cell's exact ``data-value``)."""

from __future__ import annotations

import base64
from html import escape

from .document import Bullets, Document, Image, Section, Table, Text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.subtitle { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order="asc"]::after { content: " ▲"; }
table.sortable th[data-order="desc"]::after { content: " ▼"; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.note { color: #555; font-size: 0.85em; margin-top: 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
ul.findings li { margin: 0.3em 0; }
nav ul { columns: 2; }
"""
#: sort a table on the clicked column: numbers by data-value, text otherwise; a second click reverses
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], asc = th.dataset.order !== "asc", i = th.cellIndex;
  th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.order);
  th.dataset.order = asc ? "asc" : "desc";
  const key = row => { const c = row.cells[i], n = parseFloat(c.dataset.value);
    return isNaN(n) ? [1, c.textContent.trim().toLowerCase()] : [0, n]; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    const c = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0); return asc ? c : -c; })
    .forEach(row => body.appendChild(row));
}));
"""


def table(block: Table) -> str:
    css = ' class="sortable"' if block.sortable else ""
    ident = f' id="{escape(block.id)}"' if block.id else ""
    out = [f"<table{css}{ident}>"]
    if block.caption:
        out.append(f"<caption>{escape(block.caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{escape(c)}</th>" for c in block.columns) + "</tr></thead><tbody>")
    for row in block.rows:
        cells = []
        for c in row:
            if isinstance(c.value, float):
                cells.append(f'<td class="num" data-value="{c.value!r}">{escape(c.text)}</td>')
            else:
                cells.append(f"<td>{escape(c.text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if block.note:
        out.append(f'<p class="note">{escape(block.note)}</p>')
    return "\n".join(out)


def image(block: Image) -> str:
    data = base64.b64encode(block.png).decode("ascii")
    caption = f"<figcaption>{escape(block.caption)}</figcaption>" if block.caption else ""
    return f'<figure><img alt="{escape(block.alt)}" src="data:image/png;base64,{data}">{caption}</figure>'


def section(sec: Section) -> str:
    ident = f' id="{escape(sec.id)}"' if sec.id else ""
    out = [f"<section{ident}><h{sec.level}>{escape(sec.title)}</h{sec.level}>"]
    for block in sec.blocks:
        if isinstance(block, Text):
            out.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            css = f' class="{escape(block.css)}"' if block.css else ""
            out.append(f"<ul{css}>" + "".join(f"<li>{escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            out.append(table(block))
        elif isinstance(block, Image):
            out.append(image(block))
    out += [section(sub) for sub in sec.subsections]
    out.append("</section>")
    return "\n".join(out)


def render(doc: Document) -> str:
    contents = "".join(f'<li><a href="#{escape(s.id)}">{escape(s.title)}</a></li>' for s in doc.sections if s.id)
    body = "\n".join(section(s) for s in doc.sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(doc.title)}</title><style>{STYLE}</style></head>
<body><h1>{escape(doc.title)}</h1><p class="subtitle">{escape(doc.subtitle)}</p>
<nav><ul>{contents}</ul></nav>
{body}
<script>{SCRIPT}</script>
</body></html>
"""
