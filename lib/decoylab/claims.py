"""Each headline claim of the four papers as a check with a verdict, its evidence and its 95 % interval.

A ``Claim`` quotes one statement of a paper (table, figure or section, and its printed number) and holds a
test (``AtLeast``, ``AtMost``, ``Within``, ``GreaterThan``, ``Ordering``). ``Claim.judge(measurement)`` gives
a ``Verdict``: *inconclusive* when the evidence is below the claim's minimum (``min_n`` images,
``min_successes`` successful adversarial examples: 30 for a detection rate) or the 95 % interval straddles
the test's threshold; *reproduced* when the whole interval satisfies the test; *not reproduced* when the
whole interval violates it. The intervals come from ``decoylab.stats`` (Wilson's for a proportion, percentile
bootstraps for AUCs and differences). Claims and tolerances are declared in ``paper_values.yaml`` (``declared``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


from decoylab import paper_values
from decoylab.stats import wilson

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
OUTCOMES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
#: Below this many successful adversarial examples a detection claim stays inconclusive (30/30: [0.886, 1]).
DETECTION_MIN_SUCCESSES = 30


def fmt(x: float | str | None) -> str:  # a stored results.json writes NaN as the string "nan"
    return "—" if x is None else x if isinstance(x, str) else f"{x:.4g}"


def span(interval: tuple[float, float] | None) -> str:
    if interval is None:  # a part the run could not measure (results.record_claim stores None)
        return "[—]"
    return f"[{fmt(interval[0])}, {fmt(interval[1])}]"


def tolerance_rule(paper_value: float, decimals: int, paper_n: int | None = None, spread: float = 0.0,
                   step: float = 0.005) -> float:
    """The tolerance rule of ``paper_values.yaml``: half a unit in the paper's last printed digit
    (``decimals`` as a fraction), plus the larger distance from the paper's value to its own Wilson 95 %
    interval when the paper states its sample size, plus ``spread`` (2σ of a variation the paper itself
    reports, e.g. over random fingerprint sets); the sum rounded up to the next ``step``."""
    total = 0.5 * 10.0 ** -decimals + spread
    if paper_n:
        low, high = wilson(round(paper_value * paper_n), paper_n)
        total += max(paper_value - low, high - paper_value)
    return round(math.ceil(total / step - 1e-9) * step, 10)


@dataclass(frozen=True)
class Measurement:
    """What the kit measured for a claim: ``value`` with its 95 % ``interval``, on ``n`` images, resting on
    ``n_successful`` successful adversarial examples (None where that does not apply), with the ``seeds``
    used; ``note`` lists every way the settings differ from the paper's. ``parts`` holds the measured values
    behind a difference or an ordering; ``differences`` optional intervals of ``parts[a] − parts[b]``
    (e.g. from a paired bootstrap), keyed ``(a, b)``."""
    value: float | None
    interval: tuple[float, float] | None
    n: int
    n_successful: int | None = None
    seeds: tuple[int, ...] = ()
    note: str = ""
    parts: Mapping[str, Measurement] = field(default_factory=dict)
    differences: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def difference_interval(self, a: str, b: str) -> tuple[float, float]:
        """95 % interval of parts[a] − parts[b]: the one in ``differences``, else MOVER (Zou & Donner 2008;
        Newcombe's method for two Wilson intervals) from the parts' own intervals, taken as independent."""
        if (a, b) in self.differences:
            return tuple(self.differences[(a, b)])
        if (b, a) in self.differences:
            low, high = self.differences[(b, a)]
            return -high, -low
        return _mover(self.parts[a], self.parts[b])


def _mover(a: Measurement, b: Measurement) -> tuple[float, float]:
    (la, ua), (lb, ub), d = a.interval, b.interval, a.value - b.value
    return d - math.hypot(a.value - la, ub - b.value), d + math.hypot(ua - a.value, b.value - lb)


def proportion(k: int, n: int, *, images: int | None = None, n_successful: int | None = None,
               seeds: Iterable[int] = (), note: str = "") -> Measurement:
    """``k`` of ``n`` (e.g. flagged of the successful adversarial examples) with its Wilson interval;
    ``images``: how many images the run used (default ``n``)."""
    return Measurement(k / n if n else float("nan"), wilson(k, n), images if images is not None else n,
                       n_successful, tuple(seeds), note)


def not_measured(note: str, *, n: int = 0, n_successful: int | None = None) -> Measurement:
    """What a run could not measure (no example, no detector, an attack not run): NaN value and interval, so
    that a difference or an ordering built on it is NaN too; record it with ``results.record_claim(...,
    undecided=...)`` naming why."""
    return Measurement(float("nan"), (float("nan"), float("nan")), n, n_successful, (), note)


def difference(measured: Measurement, control: Measurement, *, labels: tuple[str, str] = ("defense", "control"),
               interval: tuple[float, float] | None = None, note: str | None = None) -> Measurement:
    """``measured − control`` for ``GreaterThan``: the interval given (a paired bootstrap, best) or MOVER."""
    return combined({labels[0]: measured, labels[1]: control}, note=note,
                    value=measured.value - control.value,
                    interval=interval or _mover(measured, control))


def combined(parts: Mapping[str, Measurement], *, differences=None, note: str | None = None,
             value: float | None = None, interval: tuple[float, float] | None = None) -> Measurement:
    """Several measured values as one measurement (for ``Ordering``): its evidence is the weakest part's."""
    seeds = tuple(sorted({s for m in parts.values() for s in m.seeds}))
    notes = note if note is not None else "; ".join(dict.fromkeys(m.note for m in parts.values() if m.note))
    successes = [m.n_successful for m in parts.values() if m.n_successful is not None]
    return Measurement(value, interval, min(m.n for m in parts.values()), min(successes) if successes else None,
                       seeds, notes, dict(parts), dict(differences or {}))


@dataclass(frozen=True)
class Verdict:
    outcome: str  # one of OUTCOMES
    reason: str
    claim: Claim | None = None
    measurement: Measurement | None = None

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome={self.outcome!r} is not allowed; allowed: {', '.join(OUTCOMES)}")

    def as_dict(self) -> dict[str, Any]:
        """What ``results.record_claim`` stores (plain JSON) and the report reads."""
        c, m = self.claim, self.measurement
        out: dict[str, Any] = {"verdict": self.outcome, "reason": self.reason}
        if c is not None:
            out.update(id=c.id, paper=c.paper, source=c.source, statement=c.statement, paper_value=c.paper_value,
                       test=c.test.describe(), min_n=c.min_n, min_successes=c.min_successes)
        if m is not None:
            out.update(value=m.value, interval=list(m.interval) if m.interval else None, n=m.n,
                       n_successful=m.n_successful, seeds=list(m.seeds), note=m.note,
                       parts={k: {"value": p.value, "interval": list(p.interval) if p.interval else None, "n": p.n,
                                  "n_successful": p.n_successful} for k, p in m.parts.items()})
        return out


def _bounds(m: Measurement, satisfied: bool, violated: bool, test: str) -> Verdict:
    where = f"the 95 % interval {span(m.interval)}"
    if satisfied:
        return Verdict(REPRODUCED, f"the whole of {where} is {test}", measurement=m)
    if violated:
        return Verdict(NOT_REPRODUCED, f"none of {where} is {test}", measurement=m)
    return Verdict(INCONCLUSIVE, f"{where} straddles the threshold: part of it is {test}, part is not", measurement=m)


@dataclass(frozen=True)
class AtLeast:
    threshold: float

    def describe(self) -> str:
        return f"at least {fmt(self.threshold)}"

    def judge(self, m: Measurement) -> Verdict:
        return _bounds(m, m.interval[0] >= self.threshold, m.interval[1] < self.threshold, self.describe())


@dataclass(frozen=True)
class AtMost:
    threshold: float

    def describe(self) -> str:
        return f"at most {fmt(self.threshold)}"

    def judge(self, m: Measurement) -> Verdict:
        return _bounds(m, m.interval[1] <= self.threshold, m.interval[0] > self.threshold, self.describe())


@dataclass(frozen=True)
class Within:
    target: float
    tolerance: float

    def describe(self) -> str:
        return f"within {fmt(self.target)} ± {fmt(self.tolerance)}"

    def judge(self, m: Measurement) -> Verdict:
        low, high = m.interval
        lo_edge, hi_edge = self.target - self.tolerance, self.target + self.tolerance
        return _bounds(m, lo_edge <= low and high <= hi_edge, high < lo_edge or low > hi_edge, self.describe())


@dataclass(frozen=True)
class GreaterThan:
    """The measured value minus ``other`` (the measurement is that difference) is above 0."""
    other: str = "control"

    def describe(self) -> str:
        return f"above the {self.other} (difference > 0)"

    def judge(self, m: Measurement) -> Verdict:
        return _bounds(m, m.interval[0] > 0, m.interval[1] <= 0, f"above 0 (kit minus {self.other})")


@dataclass(frozen=True)
class Ordering:
    """``labels`` (keys of the measurement's ``parts``) from the largest value to the smallest (``increasing``:
    from the smallest). Reproduced when every consecutive difference's 95 % interval lies above 0; not
    reproduced when some consecutive pair is reversed with its interval entirely below 0; else inconclusive."""
    labels: tuple[str, ...]
    increasing: bool = False

    def describe(self) -> str:
        return (" < " if self.increasing else " > ").join(self.labels)

    def judge(self, m: Measurement) -> Verdict:
        missing = [label for label in self.labels if label not in m.parts]
        if missing or len(self.labels) < 2:
            raise ValueError(f"ordering {self.describe()}: the measurement has no part {missing} (parts: {list(m.parts)})")
        pairs = list(zip(self.labels, self.labels[1:]))
        if self.increasing:
            pairs = [(b, a) for a, b in pairs]
        spans = {(a, b): m.difference_interval(a, b) for a, b in pairs}
        text = "; ".join(f"{a} − {b}: {span(s)}" for (a, b), s in spans.items())
        if any(math.isnan(x) for s in spans.values() for x in s):
            return Verdict(INCONCLUSIVE, f"a part is not a number ({text})", measurement=m)
        reversed_ = ", ".join(f"{b} above {a}" for (a, b), (_, high) in spans.items() if high < 0)
        if all(low > 0 for low, _ in spans.values()):
            return Verdict(REPRODUCED, f"every consecutive difference's 95 % interval lies above 0 ({text})", None, m)
        if reversed_:
            return Verdict(NOT_REPRODUCED, f"reversed with the whole interval below 0: {reversed_} ({text})", None, m)
        return Verdict(INCONCLUSIVE, f"some consecutive difference's 95 % interval includes 0 ({text})", None, m)


Test = AtLeast | AtMost | Within | GreaterThan | Ordering


@dataclass(frozen=True)
class Claim:
    """One headline claim: ``id`` (e.g. "honeymodels.table1.mnist.pgd.tpr"), ``paper``, ``source`` (table,
    figure or section), ``statement`` in words, the printed ``paper_value`` (None if the claim is in words
    only), the ``test`` and the evidence it needs (``min_n`` images, ``min_successes`` successful adversarial
    examples; ``DETECTION_MIN_SUCCESSES`` for a detection rate)."""
    id: str
    paper: str
    source: str
    statement: str
    test: Test
    paper_value: float | None = None
    min_n: int = 1
    min_successes: int | None = None

    def judge(self, m: Measurement) -> Verdict:
        if self.min_successes is not None and m.n_successful is None:
            raise ValueError(f"claim {self.id} needs the number of successful adversarial examples (n_successful)")
        if m.n < self.min_n:
            verdict = Verdict(INCONCLUSIVE, f"too little evidence: {m.n} images, the claim needs at least {self.min_n}")
        elif self.min_successes is not None and m.n_successful < self.min_successes:
            verdict = Verdict(INCONCLUSIVE, f"too little evidence: {m.n_successful} successful adversarial examples, "
                                            f"the claim needs at least {self.min_successes}")
        elif not isinstance(self.test, Ordering) and (m.value is None or m.interval is None or any(
                math.isnan(x) for x in (m.value, *m.interval))):
            verdict = Verdict(INCONCLUSIVE, f"nothing was measured (value {m.value}, interval {m.interval})")
        else:
            verdict = self.test.judge(m)
        return replace(verdict, claim=self, measurement=m)


def _test(spec: dict[str, Any], paper_value: float | None) -> Test:
    kind, tolerance = spec["test"], spec.get("tolerance")
    if kind == "within":
        return Within(paper_value, tolerance)
    if kind in ("at_least", "at_most"):
        sign = -1 if kind == "at_least" else 1
        threshold = spec["threshold"] if "threshold" in spec else paper_value + sign * tolerance
        return AtLeast(threshold) if kind == "at_least" else AtMost(threshold)
    if kind == "greater_than":
        return GreaterThan(spec.get("other", "control"))
    if kind == "ordering":
        return Ordering(tuple(spec["order"]), bool(spec.get("increasing", False)))
    raise ValueError(f"claim {spec.get('id')}: test={kind!r} is not allowed; allowed: within, at_least, at_most, "
                     "greater_than, ordering")


def declared(paper: str) -> list[Claim]:
    """The claims ``paper_values.yaml`` declares for ``paper``, each with its paper value and tolerance."""
    found = []
    for spec in paper_values.claims(paper):
        value = paper_values.value_at(paper, spec["value"]) if "value" in spec else None
        if "minus" in spec:
            value = round(value - paper_values.value_at(paper, spec["minus"]), 10)
        source = spec.get("source")
        if source is None:
            source = paper_values.source(paper, spec["value"][0])
            source = source[spec["value"][1]] if isinstance(source, dict) else source
        evidence = spec["evidence"]
        if evidence == "detection":
            evidence = {"min_successes": DETECTION_MIN_SUCCESSES}
        found.append(Claim(spec["id"], paper, source, spec["statement"], _test(spec, value), value,
                           evidence.get("min_n", 1), evidence.get("min_successes")))
    return found


COLUMNS = ("claim", "source", "paper value", "kit value", "95 % interval", "n", "successful", "verdict", "reason",
           "settings differences")


def _items(verdicts: Iterable[Verdict] | Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts, or results.json's ``claims`` mapping (id: stored verdict), as plain dicts."""
    if isinstance(verdicts, Mapping):
        return [{"id": k, **v} for k, v in verdicts.items()]
    return [{"id": "?", **v.as_dict()} for v in verdicts]


def rows(verdicts: Iterable[Verdict] | Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    """One row per claim (``COLUMNS``) from Verdicts or from results.json's ``claims`` mapping."""
    return [[d["id"], d.get("source", ""), d.get("paper_value"), d.get("value"),
             span(d["interval"]) if d.get("interval") else "", d.get("n"), d.get("n_successful"), d["verdict"],
             d["reason"], d.get("note") or ""] for d in _items(verdicts)]


def verdict_table(verdicts: Iterable[Verdict]):
    """The verdicts as a pandas DataFrame indexed by claim (``COLUMNS``)."""
    import pandas as pd

    return pd.DataFrame(rows(verdicts), columns=list(COLUMNS)).astype({"n": "Int64", "successful": "Int64"}).set_index(
        "claim")


def tally(outcomes: Iterable[str]) -> dict[str, int]:
    outcomes = list(outcomes)
    return {o: outcomes.count(o) for o in OUTCOMES}


def tally_line(counts: Mapping[str, int]) -> str:
    total = sum(counts[o] for o in OUTCOMES)
    return f"{total} claim{'s' if total != 1 else ''} checked: " + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)


def _evidence(d: Mapping[str, Any]) -> str:
    parts = [f"{d.get('n')} images"]
    if d.get("n_successful") is not None:
        parts.append(f"{d['n_successful']} successful adversarial examples")
    if d.get("seeds"):
        parts.append("seed" + ("s " if len(d["seeds"]) > 1 else " ") + ", ".join(map(str, d["seeds"])))
    return ", ".join(parts)


def _sentence(d: Mapping[str, Any]) -> str:
    if d.get("interval"):
        measured = f"this run measured {fmt(d.get('value'))} (95 % interval {span(d['interval'])}; {_evidence(d)})"
    elif not d.get("parts"):
        measured = "this run measured nothing"
    else:  # an ordering: its parts
        values = ", ".join(f"{k} = {fmt(p['value'])} {span(p['interval'])}" for k, p in (d.get("parts") or {}).items())
        measured = f"this run measured {values} ({_evidence(d)})"
    paper = f"the paper's {fmt(d['paper_value'])}" if d.get("paper_value") is not None else "the paper's statement"
    lead = f"- **{d['verdict'].capitalize()}** — {d.get('source', '')} (`{d['id']}`): {d.get('statement', '')} "
    link = {NOT_REPRODUCED: f", against {paper}: ", INCONCLUSIVE: "; inconclusive because "}.get(
        d["verdict"], f", beside {paper}: ")
    body = f"For this check ({d.get('test')}), {measured}{link}{d['reason']}."
    return lead + body + (f" Settings differ from the paper: {d['note']}." if d.get("note") else "")


def summary_markdown(verdicts: Iterable[Verdict] | Mapping[str, Mapping[str, Any]], paper_name: str) -> str:
    """A notebook's Summary, rendered only from this run's verdicts: the tally, then one sentence per claim
    (what was measured, the verdict and its reason; for *not reproduced* also the paper's value)."""
    items = _items(verdicts)
    if not items:
        return f"**{paper_name}**: no claim was checked in this run."
    lines = [f"**{paper_name}**: {tally_line(tally(d['verdict'] for d in items))}.", ""]
    return "\n".join(lines + [_sentence(d) for d in items])
