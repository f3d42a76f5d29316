"""``remit matrix COUNCIL``: a self-contained HTML delegation matrix of one scheme.

Rows are decisions, grouped by the scheme's headings; columns are the scheme's posts,
panels and external parties. Each cell answers "may an actor holding only this role take
this decision?" with the engine's semantics, read from the same compiled lines in the same
order (:func:`cell`): seniors inherit a junior post's permissions (``Line.matching_roles``),
prohibitions bind the exact role, the first line that always applies settles the answer.

* ``allow``: a line with no condition allows it (obligations may still follow);
* ``conditional``: allowed only under conditions (amounts, emergencies, preconditions,
  absences, service areas...), listed in the scheme's words;
* ``none``: not permitted.

The condition, the citation (section and quote) and the obligations are in each cell's
tooltip and, on click, in a detail panel. A service-area filter (also ``#area=ID`` in the
URL) recomputes area-limited cells for an actor working in that area and hides decisions
nobody may take there. No external resources: one file, printable.

The page is built with f-strings and ``html.escape`` on every value from a scheme (ids are
checked names). A Jinja2 template with autoescape gave the same document (same elements,
attributes and text for every council) but rendered 1.2-1.3x slower (all five councils,
median of five interleaved runs), so it was not adopted.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from remit.engine.queries import open_words
from remit.engine.trace import LineTrace, State, actor_of, area_limited, tested_facts, walk
from remit.model.policy import CouncilPolicy, Decision, Line

ALLOW, CONDITIONAL, NONE = "allow", "conditional", "none"
_MARK = {ALLOW: "✓", CONDITIONAL: "◐", NONE: "·"}


@dataclass(frozen=True)
class Cell:
    state: str
    detail: str  # conditions, citations and obligations in plain words


def _words(policy: CouncilPolicy, lt: LineTrace) -> str:
    words = open_words(policy, lt)
    if lt.area is State.OPEN:
        where = f"only in {policy.areas[lt.line.area].name}"
        words = f"{where}; {words}" if words else where
    return words


def _explain(policy: CouncilPolicy, line: Line, role: str, words: str) -> str:
    rule = policy.rules[line.rule]
    head = f"{rule.section} [{rule.id}]"
    if line.effect == "deny":
        who = "anyone" if line.role == "*" else policy.roles[line.role].title
        head += f" prohibits {who}"
        if rule.decided_outside:
            head += f" (decided by {rule.decided_outside})"
    elif line.role != role:
        head += f", inherited from the {policy.roles[line.role].title} (minimum level)"
    text = f'{head}{": " + words if words else ""}\n  "{rule.quote}"'
    for o in rule.obligations:
        if o.kind != "precondition":
            text += f"\n  {o.kind}: {o.text}"
    return text


def cell(policy: CouncilPolicy, decision: Decision, role: str, area: str = "") -> Cell:
    """The matrix cell for an actor holding only ``role``; ``area``: acting in that area
    ("" — any area: area-limited lines count as conditions). Every condition is left open
    (the matrix answers for no particular case), so the engine's walk gives, line by line,
    what the role meets and what it would need."""
    every_fact = tested_facts(decision)
    trace = walk(decision, actor_of(policy, (role,)), area or None, {}, open_facts=every_fact)
    allows: list[str] = []
    notes: list[str] = []
    restricted = False  # a conditional prohibition applies before any settled allow
    for lt in trace.lines:
        if not lt.possible:
            continue
        words = _words(policy, lt)
        notes.append(_explain(policy, lt.line, role, words))
        if lt.line.effect == "deny":
            if not words:
                state = CONDITIONAL if allows else NONE
                return Cell(state, "\n".join(notes))
            restricted = True
            continue
        if not words:
            state = CONDITIONAL if restricted else ALLOW
            return Cell(state, "\n".join(notes))
        allows.append(words)
    return Cell(CONDITIONAL if allows else NONE, "\n".join(notes))


def columns(policy: CouncilPolicy) -> list[str]:
    """Posts from the most junior up, then panels, then external parties."""
    kinds = {"post": 0, "panel": 1, "external": 2}
    return sorted(
        policy.roles,
        key=lambda r: (kinds.get(policy.roles[r].kind, 3), -policy.roles[r].rank, r),
    )


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: "6.2" before "6.11", numbers before words ("App2")."""
    return tuple(
        (0, int(tok)) if tok.isdigit() else (1, tok.lower())
        for tok in re.findall(r"\d+|[A-Za-z]+", text)
    )


def groups(policy: CouncilPolicy) -> list[tuple[str, list[Decision]]]:
    """Decisions grouped by heading (or by the section's number), in section order."""
    out: dict[str, list[Decision]] = {}
    for d in sorted(policy.decisions.values(), key=lambda d: (_natural(d.section), d.id)):
        key = d.heading or f"Section {d.section.split()[0].split('.')[0]}"
        out.setdefault(key, []).append(d)
    return list(out.items())


_CSS = """
body{font:13px/1.35 system-ui,sans-serif;margin:1em;color:#111}
h1{font-size:1.3em;margin:.2em 0}.meta{color:#444;margin:.2em 0 .8em}
table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:1px 3px}
thead th{position:sticky;top:0;background:#f4f4f4;vertical-align:bottom;z-index:1}
thead th.role div{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;
max-height:13em;overflow:hidden;text-overflow:ellipsis;font-weight:normal}
th.group{background:#dde6f0;text-align:left;font-size:1.05em}
th.dec{text-align:left;font-weight:normal;max-width:28em}
th.dec .sec{color:#555;margin-right:.4em}
td{text-align:center;cursor:pointer;min-width:1.4em}
td.allow{background:#2e7d32;color:#fff}td.conditional{background:#f9c74f}
td.none{background:#fff;color:#bbb}
tr.hidden{display:none}
#detail{position:fixed;right:1em;bottom:1em;width:34em;max-height:40vh;overflow:auto;
background:#fff;border:2px solid #333;padding:.6em;white-space:pre-wrap;display:none}
.legend span{display:inline-block;padding:0 .5em;margin-right:.6em;border:1px solid #bbb}
@media print{#controls,#detail{display:none}thead th{position:static}
body{margin:0;font-size:8px}td.allow,td.conditional{-webkit-print-color-adjust:exact;
print-color-adjust:exact}}
"""

_JS = """
(function(){
var sel=document.getElementById('area'),panel=document.getElementById('detail');
var MARK={allow:'\\u2713',conditional:'\\u25d0',none:'\\u00b7'};
function apply(area){
  document.querySelectorAll('td[data-s]').forEach(function(td){
    var v=JSON.parse(td.getAttribute('data-v')||'{}'),s=td.getAttribute('data-s'),
        t=td.getAttribute('data-t');
    if(area&&v[area]){s=v[area][0];t=v[area][1];}
    td.className=s;td.title=t;td.textContent=MARK[s];
  });
  document.querySelectorAll('tr.decision').forEach(function(tr){
    var any=!area||Array.prototype.some.call(tr.querySelectorAll('td'),
      function(td){return td.className!=='none';});
    tr.classList.toggle('hidden',!any);
  });
  document.querySelectorAll('tr.grouprow').forEach(function(tr){
    var n=tr.nextElementSibling,shown=false;
    while(n&&n.classList.contains('decision')){if(!n.classList.contains('hidden'))shown=true;
      n=n.nextElementSibling;}
    tr.classList.toggle('hidden',!shown);
  });
  document.getElementById('shown').textContent=
    document.querySelectorAll('tr.decision:not(.hidden)').length;
}
sel.addEventListener('change',function(){location.hash=sel.value?'area='+sel.value:'';
  apply(sel.value);});
document.querySelector('table').addEventListener('click',function(e){
  var td=e.target.closest('td');if(!td)return;
  panel.textContent=td.parentNode.querySelector('th').textContent+' / '+
    td.getAttribute('data-r')+'\\n\\n'+td.title;panel.style.display='block';});
panel.addEventListener('click',function(){panel.style.display='none';});
var m=/area=([a-z0-9_]+)/.exec(location.hash);
if(m){sel.value=m[1];}
apply(sel.value);
})();
"""


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


def render(policy: CouncilPolicy, version: str = "") -> str:
    """The whole HTML page."""
    roles = columns(policy)
    area_ids = list(policy.areas)
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_attr(policy.name)}: delegation matrix</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(policy.name)}: delegation matrix</h1>",
        f'<p class="meta">{html.escape(policy.title)}, effective {html.escape(policy.effective)}'
        f"{'; policy ' + html.escape(version) if version else ''}. "
        f'<span id="shown">{len(policy.decisions)}</span> of {len(policy.decisions)} decisions.'
        "</p>",
        '<p class="legend"><span class="allow" style="background:#2e7d32;color:#fff">✓ allowed'
        '</span><span style="background:#f9c74f">◐ allowed only under conditions</span>'
        "<span>· not permitted</span> Seniors inherit a post's permissions; hover or click a"
        " cell for the condition and the citation.</p>",
        '<p id="controls"><label>Service area: <select id="area">'
        '<option value="">all areas</option>',
    ]
    for aid in area_ids:
        out.append(f'<option value="{aid}">{html.escape(policy.areas[aid].name)}</option>')
    out.append("</select></label></p>")
    out.append('<table id="matrix"><thead><tr><th>Decision</th>')
    for rid in roles:
        r = policy.roles[rid]
        out.append(
            f'<th class="role" data-r="{rid}" title="{_attr(", ".join(r.titles))}">'
            f"<div>{html.escape(r.title)}</div></th>"
        )
    out.append("</tr></thead><tbody>")
    for heading, decisions in groups(policy):
        out.append(
            f'<tr class="grouprow"><th class="group" colspan="{len(roles) + 1}">'
            f"{html.escape(heading)}</th></tr>"
        )
        for d in decisions:
            limited = area_limited(d)
            out.append(
                f'<tr class="decision" data-d="{d.id}"><th class="dec" title="{_attr(d.quote)}">'
                f'<span class="sec">{html.escape(d.section)}</span>{html.escape(d.wording)}</th>'
            )
            for rid in roles:
                c = cell(policy, d, rid)
                variants: dict[str, list[str]] = {}
                if limited:
                    for aid in area_ids:
                        ca = cell(policy, d, rid, aid)
                        if ca != c:
                            variants[aid] = [ca.state, ca.detail]
                tip = c.detail or "not permitted: no rule of this decision names this role"
                extra = f' data-v="{_attr(json.dumps(variants))}"' if variants else ""
                out.append(
                    f'<td class="{c.state}" data-r="{rid}" data-s="{c.state}"'
                    f' data-t="{_attr(tip)}" title="{_attr(tip)}"{extra}>{_MARK[c.state]}</td>'
                )
            out.append("</tr>")
    out.append("</tbody></table>")
    out.append('<div id="detail" title="click to close"></div>')
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"
