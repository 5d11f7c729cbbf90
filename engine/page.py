"""A run you can look at: one self-contained HTML page built from a report and its files.

The page is rebuilt from what lies beside the report, so ``report html`` can make it at
any time, also for a run still going or killed:

- the report itself (:mod:`engine.overview`): outcome totals, the per-location table,
  failures grouped by cause with their rows;
- the journal's first line (:mod:`engine.journal`): the job kind and its settings (API,
  base URL), the job files and their digests; never a token (a journal holds none);
- the timeline (:mod:`engine.timeline`, read by :mod:`engine.timeline_view`): when each run
  started and ended and its exit code, requests, 429s, retries and time per location, and
  requests per second against each location's known limit. A report without one (an older
  release) gets a page without it.

One file that works offline: no CDN, no external font, no fetched script; charts are inline
SVG made by pygal (with ``js=[]``: pygal's tooltips would fetch a script, so there are
none). The page's own script, the one thing a chart library does not cover, sorts and
filters the per-location table and is kept small (about 40 lines): a table library would
weigh more than the data. It stays small whatever the run's size: the table shows at most
``max_locations`` locations (the worst first), each failure group at most ``examples``
rows, each chart at most ``timeline.MAX_BINS`` points; 100,000 records make well under 2 MB.

Everything shown is escaped by Jinja2's autoescaping, charts included (pygal escapes its
text, and no report value goes into a chart): a job file's text cannot inject markup. The
numbers are also embedded as JSON (``<script type="application/json" id="report-data">``)
for tools and tests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2
import orjson
from markupsafe import Markup

from .errors import ConfigError, StorageError
from .journal import journal_path
from .overview import NAME_COLUMN, LocationSummary, Overview, run_identity, summarize
from .timeline import timeline_path
from .timeline_view import Bin, LocationActivity, Series, TimelineView, read_timeline

__all__ = ["check_page_path", "render_page", "write_page"]

#: locations in the table at most (the worst first); the rest are counted
MAX_LOCATIONS = 2000

#: requests, limit, retries, 429s, resumed: the page's legend uses the same colours
_COLORS = ("#2563eb", "#111827", "#f59e0b", "#dc2626", "#9333ea")
_LEGEND = (
    ("requests/s", _COLORS[0]),
    ("limit/s", _COLORS[1]),
    ("retries/s", _COLORS[2]),
    ("429s", _COLORS[3]),
    ("a later run starts", _COLORS[4]),
)

#: pygal's style for every chart (built on first use, see :func:`_pygal`)
_STYLE: dict[str, Any] = {
    "background": "transparent",
    "plot_background": "transparent",
    "colors": _COLORS,
    "guide_stroke_dasharray": "0",
    "major_guide_stroke_dasharray": "0",
    "guide_stroke_color": "#e5e7eb",
    "major_guide_stroke_color": "#d1d5db",
    "font_family": "system-ui, sans-serif",
    "label_font_size": 11,
    "legend_font_size": 12,
}


def _pygal() -> Any:
    """pygal, imported when a chart is drawn rather than with the engine: on import it adds
    a legacy finder to ``sys.meta_path`` (for its map plugins) that makes Python 3.11 warn
    (``ImportWarning``, ignored by default) on every later import; only a process that
    draws a page should carry it."""
    import pygal

    return pygal


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("engine", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


def _ticks(length: float, most: int = 8) -> list[float]:
    """Round times (seconds) for the x axis: at most ``most`` + 1 labels over ``length``."""
    step = next((s for s in _STEPS if length / s <= most), 86400 * math.ceil(length / 86400 / most))
    return [float(i * step) for i in range(int(length // step) + 1)]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return _clock(seconds)


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "—"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _chart(series: Series, breaks: Sequence[float]) -> Markup:
    """Requests per second against the known limit, retries per second, 429s as dots,
    and a dashed line where a later run starts."""
    bins = series.bins
    pygal = _pygal()
    chart = pygal.XY(
        js=[],  # pygal's tooltip script would be fetched from the web: none
        width=860,
        height=240,
        show_legend=False,  # the page draws the legend once, in HTML
        show_dots=False,
        allow_interruptions=True,
        disable_xml_declaration=True,
        style=pygal.style.Style(**_STYLE),
        x_value_formatter=_clock,
        x_labels=_ticks(bins[-1].x + series.width if bins else 1.0),
        include_x_axis=True,
        show_x_guides=False,
        margin=8,
    )
    width = series.width

    def steps(value: Callable[[Bin], float | None]) -> list[tuple[float | None, float | None]]:
        # Each bin's value holds over its whole span: a step, not a slope between points.
        points: list[tuple[float | None, float | None]] = []
        for b in bins:
            v = value(b)
            points += [(b.x, v), (b.x + width, v)]
        return points

    chart.add("requests/s", steps(lambda b: round(b.requests, 3)), stroke_style={"width": 1.5})
    chart.add("limit/s", steps(lambda b: b.limit), stroke_style={"dasharray": "8,4", "width": 2})
    chart.add("retries/s", steps(lambda b: round(b.retries / width, 3)), stroke_style={"width": 1})
    throttled: list[tuple[float | None, float | None]] = [
        (b.x + width / 2, round(b.requests, 3)) for b in bins if b.throttled
    ]
    chart.add(
        "429s",
        throttled or [(None, None)],
        stroke=False,
        show_dots=True,
        dots_size=3.5,
    )
    if breaks:
        top = max([b.requests for b in bins] + [b.limit or 0.0 for b in bins] + [1.0])
        line: list[tuple[float | None, float | None]] = []
        for x in breaks:
            line += [(x, 0.0), (x, top), (None, None)]
        chart.add("resumed", line, stroke_style={"dasharray": "3,3", "width": 1.5})
    svg: str = chart.render(is_unicode=True)
    return Markup(svg)  # noqa: S704 - pygal's own output; no report value is in a chart


def _runs(view: TimelineView) -> list[dict[str, Any]]:
    runs = []
    for i, run in enumerate(view.runs, start=1):
        end = run.end
        runs.append(
            {
                "number": i,
                "started": _when(run.start.get("t")),
                "finished": _when(end.get("t")) if end else "",
                "duration": _duration(run.ended - run.began),
                "exit_code": end.get("exit_code") if end else None,
                "stopped": bool(end and end.get("stopped")),
                "unreachable": str(end.get("unreachable") or "") if end else "",
                "resumed": bool(run.start.get("resumed")),
                "to_send": run.start.get("to_send"),
                "requests": run.requests,
                "throttled": run.throttled,
                "retries": run.retries,
            }
        )
    return runs


def _location_rows(
    overview: Overview, activity: Mapping[str, LocationActivity], limit: int
) -> list[dict[str, Any]]:
    rows = []
    shown: list[LocationSummary] = list(overview.locations[:limit])
    for loc in shown:
        act = activity.get(loc.location_id)
        rows.append(
            {
                "id": loc.location_id,
                "name": loc.name,
                "total": loc.total,
                "not_ok": loc.not_ok,
                "counts": loc.counts,
                "attempts": loc.attempts,
                "requests": act.requests if act else None,
                "throttled": act.throttled if act else None,
                "retries": act.retries if act else None,
                "errors": (act.server_errors + act.lost + act.unreached) if act else None,
                "busy": act.busy if act else None,
                "answer_ms": act.answer_avg_ms if act else None,
                "pace": act.pace if act else None,
                "limit": f"{act.limit}/{act.interval:g}s" if act and act.limit else "",
            }
        )
    return rows


#: the columns an example row starts with: where it is and why it is not ok
_FIRST_COLUMNS = ("source", "location_id", NAME_COLUMN, "http_status", "attempts", "error")


def _example_columns(columns: Sequence[str]) -> list[str]:
    """Every column of the report, the ones that say what went wrong first."""
    first = [c for c in _FIRST_COLUMNS if c in columns]
    return first + [c for c in columns if c not in first]


def _pace(activity: Mapping[str, LocationActivity]) -> float | None:
    """Requests sent over what the known limits allowed while each location was busy, over
    the locations busy for two windows or more (busy time is counted in whole seconds, so
    a shorter span says nothing about pacing); None when there is none."""
    used = allowed = 0.0
    for act in activity.values():
        if act.limit_rate and act.busy >= 2 * act.interval:
            used += act.requests
            allowed += act.limit_rate * act.busy
    return used / allowed if allowed else None


def _data(overview: Overview, view: TimelineView, rows: list[dict[str, Any]]) -> str:
    """The page's numbers as JSON, safe inside a script element."""
    data = {
        "reports": list(overview.reports),
        "total": overview.total,
        "not_ok": overview.not_ok,
        "counts": overview.counts,
        "ok_statuses": sorted(overview.ok_statuses),
        "locations_total": len(overview.locations),
        "locations_shown": len(rows),
        "groups": [
            {
                "outcome": g.outcome,
                "http_status": g.http_status,
                "pattern": g.pattern,
                "count": g.count,
                "locations": g.locations,
                "examples": len(g.examples),
            }
            for g in overview.groups
        ],
        "more_groups": overview.more_groups,
        "more_group_records": overview.more_group_records,
        "runs": [
            {
                "started": run.start.get("t"),
                "ended": run.end.get("t") if run.end else None,
                "exit_code": run.end.get("exit_code") if run.end else None,
                "requests": run.requests,
                "throttled": run.throttled,
                "retries": run.retries,
            }
            for run in view.runs
        ],
        "timeline": None
        if view.overall is None
        else {
            "width": view.overall.width,
            "points": len(view.overall.bins),
            "requests": sum(a.requests for a in view.locations.values()),
            "throttled": sum(a.throttled for a in view.locations.values()),
            "retries": sum(a.retries for a in view.locations.values()),
            "busiest": [s.label for s in view.busiest],
        },
    }
    text = orjson.dumps(data).decode()
    # Inside <script>, "</script" or "<!--" in a value must not end or change the element.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(
    paths: Sequence[str],
    *,
    ok_statuses: frozenset[str] | None = None,
    max_locations: int = MAX_LOCATIONS,
    groups: int = 50,
    examples: int = 20,
) -> str:
    """The HTML page of the reports at ``paths`` (see the module docstring). Raises
    ``ConfigError`` when a report cannot be read."""
    overview = summarize(paths, ok_statuses=ok_statuses, groups=groups, examples=examples)
    view = read_timeline([timeline_path(p) for p in paths])
    rows = _location_rows(overview, view.locations, max_locations)
    outcomes = overview.outcomes
    charts: list[dict[str, Any]] = []
    if view.overall is not None:
        charts.append({"label": "", "svg": _chart(view.overall, view.breaks)})
        names = {loc.location_id: loc.name for loc in overview.locations[:max_locations]}
        for series in view.busiest:
            act = view.locations[series.label]
            charts.append(
                {
                    "label": series.label,
                    "name": names.get(series.label, ""),
                    "requests": act.requests,
                    "throttled": act.throttled,
                    "retries": act.retries,
                    "limit": f"{act.limit}/{act.interval:g}s" if act.limit else "unknown",
                    "svg": _chart(series, view.breaks),
                }
            )
    template = _env.get_template("report.html.j2")
    return template.render(
        title=", ".join(os.path.basename(p) for p in paths),
        generated=_when(dt.datetime.now(dt.UTC).timestamp()),
        overview=overview,
        outcomes=outcomes,
        identities=[run_identity(p) for p in paths],
        runs=_runs(view),
        view=view,
        charts=charts,
        legend=_LEGEND,
        width=view.overall.width if view.overall else 0,
        pace=_pace(view.locations),
        rows=rows,
        has_names=any(r["name"] for r in rows) or NAME_COLUMN in overview.columns,
        has_timeline=view.overall is not None,
        example_columns=_example_columns(overview.columns),
        examples=examples,
        data=Markup(_data(overview, view, rows)),  # noqa: S704 - JSON escaped for a script
        duration=_duration,
    )


def check_page_path(paths: Sequence[str], out: str) -> None:
    """Refuse a page path that is one of the run's own files, a folder, or in no folder;
    ``ConfigError`` says which."""
    own = {
        os.path.abspath(f)
        for p in paths
        for f in (p, journal_path(p), timeline_path(p), f"{p}.lock", f"{p}.store")
    }
    if os.path.abspath(out) in own:
        raise ConfigError(
            f"{out} is one of the run's own files: give the page a path of its own (out.html)"
        )
    if os.path.isdir(out):
        raise ConfigError(f"{out} is a folder: give the page a file path ({out}/report.html?)")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write the page {out}: folder {folder} does not exist")


def write_page(paths: Sequence[str], out: str, **options: Any) -> None:
    """Render the page of ``paths`` (see :func:`render_page`) and write it to ``out``
    atomically, replacing any earlier page. Raises ``ConfigError`` when a report cannot be
    read or ``out`` cannot be a page (:func:`check_page_path`), ``StorageError`` when
    ``out`` cannot be written."""
    check_page_path(paths, out)
    html = render_page(paths, **options)
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(out, exc) from None
