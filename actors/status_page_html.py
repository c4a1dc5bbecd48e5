"""The status page's HTML, CSS and script: one self-contained document, no external assets.

``render_page(model)`` lays out a page model (``actors.status_page.page_model``)
as HTML; the script lays out the same model, fetched from ``page.json``, as
the same elements. Every text from the model is escaped here
(``html.escape``) and set with ``textContent`` there: a balancer named
``<b>x</b>`` shows those characters, never bold text. The two layouts mirror
each other function by function (``_sections``/``sections``,
``_table``/``table``, ``_pairs``/``pairs``); change them together. A
Content-Security-Policy lets the browser run only this script.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

__all__ = ["render_page"]

CSS = """
body{font:13px/1.35 system-ui,sans-serif;margin:0 1em 1em;color:#222;background:#fafafa}
header{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ccc}
h1{font-size:18px;margin:0 .6em 0 0;display:inline}
h2{font-size:14px;margin:.6em 0 .3em}
#summary{display:inline;font-weight:600}
form{display:inline;margin-left:1em} input{width:22em}
#stamp{margin:.3em 0 0;color:#555} #stamp.stale{color:#b00;font-weight:600}
table{border-collapse:collapse;margin:.2em 0}
th,td{padding:1px .7em 1px 0;text-align:left;vertical-align:top;white-space:nowrap}
thead th{border-bottom:1px solid #bbb;font-weight:600}
table.kv th{font-weight:600;color:#555}
tr.down td{background:#fde2e2}
.reals tr.down td:nth-child(3),.changes tr.down td:nth-child(4){color:#b00;font-weight:700}
.reals tr.up td:nth-child(3),.changes tr.up td:nth-child(4){color:#070}
.reals tr.lifecycle td:nth-child(3){color:#a60;font-weight:600}
.top{display:flex;gap:3em;flex-wrap:wrap}
.balancer{border-top:1px solid #ccc;margin-top:.6em}
.balancer h2 .count{font-weight:400;color:#555;margin-left:1em}
.head .item{margin-right:1.4em;white-space:nowrap;display:inline-block} .head b{color:#555;font-weight:600}
.s-available h2 .name{color:#070} .s-failsafe h2 .name,.s-no_upstreams h2 .name{color:#b00}
.s-initial h2 .name{color:#a60}
.note,.listed,.none{color:#555;font-style:italic}
"""

# Builds the same elements as _sections() from /page.json; text only via
# textContent or text nodes (append of a string), never innerHTML.
SCRIPT = """
"use strict";
(() => {
  const page = document.getElementById("page"), q = document.getElementById("q");
  const stamp = document.getElementById("stamp"), summary = document.getElementById("summary");
  let timer = null, updates = 0;
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function table(cls, headers, rows) {
    const t = el("table", cls), head = el("thead"), body = el("tbody"), tr = el("tr");
    for (const h of headers) tr.append(el("th", "", h));
    head.append(tr);
    for (const row of rows) {
      const r = el("tr", row.cls);
      for (const c of row.cells) r.append(el("td", "", c));
      body.append(r);
    }
    t.append(head, body);
    return t;
  }
  function pairs(rows) {
    const t = el("table", "kv"), body = el("tbody");
    for (const [k, v] of rows) {
      const r = el("tr");
      r.append(el("th", "", k), el("td", "", v));
      body.append(r);
    }
    t.append(body);
    return t;
  }
  function sections(m) {
    const top = el("section", "top"), w = el("div", "writer"), c = el("div", "changes");
    w.append(el("h2", "", "writer"), pairs(m.writer));
    c.append(el("h2", "", "recent health changes"),
             m.changes.length ? table("changes", m.change_headers, m.changes)
                              : el("p", "none", "none yet"));
    top.append(w, c);
    const out = [top, el("p", "listed", m.listed)];
    for (const b of m.balancers) {
      const s = el("section", "balancer s-" + b.state), h = el("h2"), head = el("p", "head");
      h.append(el("span", "name", b.name), el("span", "count", b.count));
      for (const [k, v] of b.head) {
        const item = el("span", "item");
        item.append(el("b", "", k), " " + v);
        head.append(item);
      }
      s.append(h, head, table("reals", m.real_headers, b.rows));
      if (b.note) s.append(el("p", "note", b.note));
      out.push(s);
    }
    if (!m.balancers.length) out.push(el("p", "none", "no balancer matches"));
    return out;
  }
  async function poll() {
    clearTimeout(timer);
    let wait = 2000;
    try {
      const r = await fetch("page.json?q=" + encodeURIComponent(q.value), {cache: "no-store"});
      if (!r.ok) throw new Error("HTTP " + r.status);
      const m = await r.json();
      page.replaceChildren(...sections(m));
      summary.textContent = m.summary;
      stamp.textContent = "snapshot at " + m.generated + ", live (every " + m.poll_ms / 1000 + " s)";
      stamp.className = "";
      document.body.dataset.updates = String(++updates);
      wait = m.poll_ms;
    } catch (e) {
      stamp.textContent = "update failed (" + e.message + "): showing an older snapshot; retrying";
      stamp.className = "stale";
    }
    timer = setTimeout(poll, wait);
  }
  document.getElementById("filter").addEventListener("submit", (e) => {
    e.preventDefault();
    history.replaceState(null, "", q.value ? "?q=" + encodeURIComponent(q.value) : location.pathname);
    poll();
  });
  timer = setTimeout(poll, 2000);
})();
"""


# Defence in depth: even if some text escaped escaping, the browser would run
# no script but ours (pinned by its hash) and load nothing from anywhere.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; script-src 'sha256-"
       + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode() + "'")


def _el(tag: str, cls: str, text: str) -> str:
    attr = f' class="{escape(cls)}"' if cls else ""
    return f"<{tag}{attr}>{escape(text)}</{tag}>"


def _table(cls: str, headers: list[str], rows: list[dict]) -> str:
    head = "".join(_el("th", "", h) for h in headers)
    body = "".join(f'<tr class="{escape(row["cls"])}">'
                   + "".join(_el("td", "", c) for c in row["cells"]) + "</tr>" for row in rows)
    return f'<table class="{escape(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pairs(rows: list[list[str]]) -> str:
    body = "".join(f"<tr>{_el('th', '', k)}{_el('td', '', v)}</tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _sections(m: dict) -> str:
    changes = (_table("changes", m["change_headers"], m["changes"]) if m["changes"]
               else _el("p", "none", "none yet"))
    out = [f'<section class="top"><div class="writer">{_el("h2", "", "writer")}'
           f'{_pairs(m["writer"])}</div><div class="changes">'
           f'{_el("h2", "", "recent health changes")}{changes}</div></section>',
           _el("p", "listed", m["listed"])]
    for b in m["balancers"]:
        head = "".join(f'<span class="item"><b>{escape(k)}</b> {escape(v)}</span>'
                       for k, v in b["head"])
        out.append(f'<section class="balancer {escape("s-" + b["state"])}">'
                   f'<h2>{_el("span", "name", b["name"])}{_el("span", "count", b["count"])}</h2>'
                   f'<p class="head">{head}</p>{_table("reals", m["real_headers"], b["rows"])}'
                   + (_el("p", "note", b["note"]) if b["note"] else "") + "</section>")
    if not m["balancers"]:
        out.append(_el("p", "none", "no balancer matches"))
    return "\n".join(out)


def render_page(m: dict) -> str:
    """The whole HTML document of page model ``m``: correct without JavaScript,
    and refreshing itself (every 10 s by a meta refresh when scripts are off)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width">
<title>kglb-trio status</title>
<noscript><meta http-equiv="refresh" content="10"></noscript>
<style>{CSS}</style></head>
<body data-updates="0">
<header><h1>kglb-trio</h1><p id="summary">{escape(m["summary"])}</p>
<form id="filter" method="get" action="/"><input id="q" name="q" value="{escape(m["query"])}"
 placeholder="filter: balancer, service, VIP, host, address, reason"> <button>filter</button></form>
<p id="stamp">snapshot at {escape(m["generated"])}</p></header>
<main id="page">
{_sections(m)}
</main>
<script>{SCRIPT}</script>
</body></html>
"""
