"""``summary.json``, ``report.md`` and ``report.html`` for one preset's folder under ``runs/``.

Built from every ``<notebook>/results.json`` found there, so a report after a partial or
resumed run still lists everything that has run. Both renderings come from one list of
sections so they never disagree.
"""
from __future__ import annotations

import datetime as dt
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


def _md_table(header, rows) -> str:
    """A Markdown table (the template's ``md_table``): pipes in cells escaped, one line per row."""
    def clean(cell) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_notebook(ipynb: Path, log=None) -> Path | None:
    """The executed notebook as a readable page (nbconvert's HTML exporter) beside it, redone only when the
    notebook is newer; None when it cannot be rendered (the report then links the .ipynb)."""
    page = ipynb.with_suffix(".html")
    if page.exists() and page.stat().st_mtime >= ipynb.stat().st_mtime:
        return page
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_filename(str(ipynb))
    except Exception as err:  # a damaged notebook or a missing template must not cost the report
        if log:
            log(f"report: {ipynb} could not be rendered to HTML ({type(err).__name__}: {err}); linking the .ipynb")
        return None
    atomic_write_text(page, body)
    return page


def _exports(preset_dir: Path, claim_list: list[list[str]], per_notebook) -> list[str]:
    """The claims and recorded numbers as CSV and LaTeX (``tables/``), for papers and spreadsheets."""
    import pandas as pd

    results = pd.DataFrame([[name, *row] for name, _, rows in per_notebook for row in rows],
                           columns=["notebook", *RESULT_COLUMNS])
    claims_table = pd.DataFrame(claim_list, columns=list(CLAIM_COLUMNS))
    written = []
    for stem, table in (("claims", claims_table), ("results", results)):
        for suffix, text in ((".csv", table.to_csv(index=False)), (".tex", table.to_latex(index=False, escape=True))):
            name = f"{TABLES_DIR}/{stem}{suffix}"
            atomic_write_text(preset_dir / name, text)
            written.append(name)
    return written


TABLES_DIR = "tables"


def write(preset_dir: Path, log=None) -> dict[str, Path]:
    """``summary.json``, ``report.md``, ``report.html`` (figures inline, each executed notebook rendered to HTML
    beside it) and ``tables/{claims,results}.{csv,tex}`` for the preset's folder."""
    import jinja2

    from decoylab.claims import OUTCOMES, tally_line

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
    counts = scorecard_counts(docs)
    all_counts = {o: sum(c[o] for c in claim_counts.values()) for o in OUTCOMES}
    notebooks = []
    for (name, link, rows), row in zip(per_notebook, overview):
        ipynb = preset_dir / link
        page = render_notebook(ipynb, log) if ipynb.exists() else None
        figures = sorted(f.name for f in (preset_dir / name / "figures").glob("*.png"))
        notebooks.append({"name": name, "link": link, "page": f"{name}/{page.name}" if page else link,
                          "status": row[1], "seconds": row[2], "rows": rows, "figures": figures})
    context = {
        "title": f"Decoy Lab report — preset {preset}",
        "intro": (f"Generated {summary['generated']}. Each result stands beside the paper's value for the same "
                  "quantity where the paper has one (quoted from decoylab/paper_values.yaml); difference is kit minus "
                  "paper; settings says whether the paper measured it the same way (same dataset and settings / "
                  "different dataset / different settings); source names the table or figure and note says what "
                  "differs."),
        "claims_intro": (f"Claims: {tally_line(all_counts)}. A claim is reproduced when the whole 95 % interval of "
                         "the kit's value passes its test, not reproduced when the whole interval fails it, "
                         "inconclusive when the interval straddles the test or the evidence is below the claim's "
                         "minimum."),
        "scorecard": (f"Scorecard: {counts['total']} beside a paper value: "
                      + ", ".join(f"{counts[label]} {label}" for label in MATCH_LABELS)
                      + (f", {counts['not stated']} not stated" if counts["not stated"] else "") + "."),
        "outcomes": list(OUTCOMES), "claim_columns": list(CLAIM_COLUMNS), "result_columns": list(RESULT_COLUMNS),
        "verdict_column": CLAIM_COLUMNS.index("verdict"), "claim_rows": claim_list,
        "tally_rows": [[paper, str(sum(c.values())), *(str(c[o]) for o in OUTCOMES)]
                       for paper, c in claim_counts.items()],
        "overview_rows": overview, "notebooks": notebooks,
        "exports": _exports(preset_dir, claim_list, per_notebook),
    }
    loader = jinja2.PackageLoader("decoylab.tools", "templates")
    markdown = jinja2.Environment(loader=loader, autoescape=False, keep_trailing_newline=True)
    markdown.globals["md_table"] = _md_table
    atomic_write_text(paths["markdown"], markdown.get_template("report.md.j2").render(**context))
    page = jinja2.Environment(loader=loader, autoescape=True)
    atomic_write_text(paths["html"], page.get_template("report.html.j2").render(**context))
    return paths
