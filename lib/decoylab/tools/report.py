"""``summary.json``, ``report.md`` and ``report.html`` for one preset's folder under ``runs/``.

Built from every ``<notebook>/results.json`` found there, so a report after a partial or
resumed run still lists everything that has run. Both renderings come from one list of
sections so they never disagree.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import numbers
from pathlib import Path
from typing import Any

from decoylab.fileio import atomic_write_text
from decoylab.results import MATCH_LABELS, match_label

RESULT_COLUMNS = ("result", "value", "95 % interval", "n", "paper", "difference", "settings", "source", "note")
CLAIM_COLUMNS = ("notebook", "claim", "source", "paper value", "kit value [95 % interval]", "verdict", "evidence",
                 "settings differences", "reason")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def _difference(value: Any, paper: Any) -> Any:
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (value, paper))
    return value - paper if numeric else None


def _interval(interval: Any) -> str:
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return ""
    return f"[{_fmt(interval[0])}, {_fmt(interval[1])}]"


def _settings(r: dict[str, Any]) -> str:
    """The settings column: whether the paper's number was measured like the kit's."""
    if r.get("paper") is None:
        return ""
    return r.get("match") or "not stated"


def scorecard_counts(docs: list[dict[str, Any]]) -> dict[str, int]:
    """How many results stand beside a paper value, by whether the settings match (the label, not its list of
    differences)."""
    counts = {label: 0 for label in (*MATCH_LABELS, "not stated")}
    for doc in docs:
        for r in (doc.get("results") or {}).values():
            if r.get("paper") is not None:
                counts[match_label(r.get("match")) or "not stated"] += 1
    counts["total"] = sum(counts.values())
    return counts


def claim_sections(docs: list[dict[str, Any]]) -> tuple[dict[str, dict[str, int]], list[list[str]]]:
    """({paper: verdict counts}, one row per claim (``CLAIM_COLUMNS``)) from the documents' ``claims``."""
    from decoylab.claims import rows as claim_rows  # imported on use: planning a run needs no numpy
    from decoylab.claims import tally

    outcomes: dict[str, list[str]] = {}
    listed = []
    for doc in docs:
        stored = doc.get("claims") or {}
        for row, d in zip(claim_rows(stored), stored.values()):
            outcomes.setdefault(d.get("paper") or "?", []).append(d.get("verdict"))
            claim, source, paper_value, value, interval, n, successes, verdict, reason, note = row
            evidence = f"n={n}" + (f", {successes} successful adversarial examples" if successes is not None else "")
            listed.append([doc.get("notebook", "?"), claim, source, _fmt(paper_value),
                           f"{_fmt(value)} {interval}".strip(), verdict, evidence, note, reason])
    return {paper: tally(found) for paper, found in outcomes.items()}, listed


def load_runs(preset_dir: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(preset_dir.glob("*/results.json")):
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            docs.append({"notebook": path.parent.name, "status": "unreadable results.json", "results": {}})
    return docs


def sections(docs: list[dict[str, Any]]) -> tuple[list[list[str]], list[tuple[str, str, list[list[str]]]]]:
    """(overview rows, [(notebook, executed-notebook link, result rows)]) from ``load_runs``'s documents."""
    overview, per_notebook = [], []
    for doc in docs:
        name = doc.get("notebook", "?")
        link = f"{name}/{name}.ipynb"
        error = doc.get("error") or {}
        status = doc.get("status", "?")
        if error:
            status += f" (cell {error.get('cell')}: {error.get('ename')}: {error.get('evalue')})"
        overview.append([name, status, _fmt(doc.get("seconds")), link])
        rows = []
        for result, r in (doc.get("results") or {}).items():
            interval = r.get("interval")
            rows.append([result, _fmt(r.get("value")), _interval(interval), _fmt(r.get("n")), _fmt(r.get("paper")),
                         _fmt(_difference(r.get("value"), r.get("paper"))), _settings(r), r.get("source") or "",
                         r.get("note") or ""])
        per_notebook.append((name, link, rows))
    return overview, per_notebook


def _md_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    def clean(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header, rows, link_column: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text = html.escape(str(c))
            cells.append(f'<td><a href="{text}">{text}</a></td>' if i == link_column else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write(preset_dir: Path) -> dict[str, Path]:
    preset_dir = Path(preset_dir)
    preset = preset_dir.name
    docs = load_runs(preset_dir)
    summary = {"preset": preset, "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "notebooks": {d.get("notebook", "?"): {"status": d.get("status"), "seconds": d.get("seconds")}
                             for d in docs}}
    claim_counts, claim_list = claim_sections(docs)
    summary["claims"] = claim_counts
    paths = {"summary": preset_dir / "summary.json", "markdown": preset_dir / "report.md",
             "html": preset_dir / "report.html"}
    atomic_write_text(paths["summary"], json.dumps(summary, indent=1))

    overview, per_notebook = sections(docs)
    title = f"Decoy Lab report — preset `{preset}`"
    intro = (f"Generated {summary['generated']}. Each result stands beside the paper's value for the same "
             "quantity where the paper has one (quoted from decoylab/paper_values.yaml); *difference* is kit minus "
             "paper; *settings* says whether the paper measured it the same way (same dataset and settings / "
             "different dataset / different settings); *source* names the table or figure and *note* says what "
             "differs.")
    counts = scorecard_counts(docs)
    tally = (f"Scorecard: {counts['total']} beside a paper value: "
             + ", ".join(f"{counts[label]} {label}" for label in MATCH_LABELS)
             + (f", {counts['not stated']} not stated" if counts["not stated"] else "") + ".")
    from decoylab.claims import OUTCOMES, tally_line

    all_counts = {o: sum(c[o] for c in claim_counts.values()) for o in OUTCOMES}
    claims_intro = (f"Claims: {tally_line(all_counts)}. A claim is reproduced when the whole 95 % interval of the "
                    "kit's value passes its test, not reproduced when the whole interval fails it, inconclusive when "
                    "the interval straddles the test or the evidence is below the claim's minimum.")
    tally_rows = [[paper, str(sum(c.values())), *(str(c[o]) for o in OUTCOMES)] for paper, c in claim_counts.items()]
    md = [f"# {title}", "", intro, "", "## Claims", "", claims_intro, ""]
    if claim_list:
        md += [_md_table(("paper", "claims", *OUTCOMES), tally_rows), "", _md_table(CLAIM_COLUMNS, claim_list), ""]
    md += ["## Recorded numbers", "", tally, "", _md_table(("notebook", "status", "seconds", "executed notebook"),
                                                             overview)]
    for name, link, rows in per_notebook:
        md += ["", f"## {name}", "", f"Executed notebook: [{link}]({link})", ""]
        md.append(_md_table(RESULT_COLUMNS, rows) if rows else "_No results recorded._")
    atomic_write_text(paths["markdown"], "\n".join(md) + "\n")

    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}")
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>", f"<h1>{html.escape(title.replace('`', ''))}</h1>",
            f"<p>{html.escape(intro.replace('*', ''))}</p>", "<h2>Claims</h2>",
            f"<p><b>{html.escape(claims_intro)}</b></p>"]
    if claim_list:
        page += [_html_table(("paper", "claims", *OUTCOMES), tally_rows), _html_table(CLAIM_COLUMNS, claim_list)]
    page += ["<h2>Recorded numbers</h2>", f"<p><b>{html.escape(tally)}</b></p>",
            _html_table(("notebook", "status", "seconds", "executed notebook"), overview, link_column=3)]
    for name, link, rows in per_notebook:
        page.append(f"<h2>{html.escape(name)}</h2><p>Executed notebook: "
                    f"<a href='{html.escape(link)}'>{html.escape(link)}</a></p>")
        page.append(_html_table(RESULT_COLUMNS, rows) if rows else "<p><em>No results recorded.</em></p>")
    page.append("</body></html>")
    atomic_write_text(paths["html"], "\n".join(page))
    return paths
