"""`sems report --day DATE --out FILE.png|.html`: a plot of one station day from the ledger.

Reads the savings ledger's 15-minute rows (policy "actual", agent/energy/ledger_recorder.py) for one
UTC day straight from the station database, opened read-only so a running daemon is not
disturbed, and draws grid import against the import cap, EV charging power, PV, battery SoC
and the import price. `.png` writes the plot; `.html` writes one self-contained page (the plot
as inline SVG) with a table of the day's totals.
Exit codes: 0 written, 1 no data for that day or nothing could be written, 2 bad arguments,
78 unreadable settings file.
"""

from __future__ import annotations

import argparse
import html
import json
import sqlite3
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.cli import UsageError

EX_CONFIG = 78
FORMATS = (".png", ".html")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--day", required=True,
                        help="UTC day to plot: YYYY-MM-DD, 'today' or 'yesterday'")
    parser.add_argument("--out", required=True, type=Path,
                        help="output file: .png (the plot) or .html (plot and totals, one file)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--db", type=Path, help="station database (default: from --config)")
    source.add_argument("--config", type=Path, default=Path("/etc/sems/agent.toml"),
                        help="agent settings whose [storage] db_path to read "
                             "(default /etc/sems/agent.toml)")  # fmt: skip
    parser.add_argument("--json", action="store_true",
                        help="print what was written and the day's totals as JSON")


@dataclass
class Day:
    """One day's ledger rows as series over its 15-minute intervals (None: not recorded)."""

    day: date
    station: str | None
    hours: list[float]  # start of each recorded interval, hours after midnight UTC
    slot_h: float
    import_kw: list[float]
    export_kw: list[float]
    ev_kw: list[float]
    pv_kw: list[float | None]
    soc_pct: list[float | None]
    cap_kw: list[float | None]
    price: list[float | None]
    totals: dict[str, float]


def parse_day(text: str, today: date | None = None) -> date:
    today = today or datetime.now(UTC).date()
    if text == "today":
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--day: expected YYYY-MM-DD, 'today' or 'yesterday', got {text!r}") from None


def _db_path(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The database to read, and the station id when settings were read."""
    if args.db is not None:
        return args.db, None
    from agent.config.settings import ConfigError, load

    try:
        settings = load(args.config)
    except ConfigError as exc:
        raise _ConfigProblem(exc.problems[0]) from None
    return settings.storage.db_path, settings.station.id


class _ConfigProblem(Exception):
    pass


class NoData(Exception):
    """Nothing to plot: a one-line reason, exit 1."""


def load_day(db_path: Path, day: date, station: str | None = None, slot_h: float = 0.25) -> Day:
    """The day's "actual" ledger rows (and the counterfactual's cost when stored)."""
    if not db_path.is_file():
        raise NoData(f"no station database at {db_path}")
    try:
        # Read-only: never create a database, never hold a write lock the daemon waits on.
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NoData(f"cannot open {db_path}: {exc}") from None
    try:
        have = {r[1] for r in conn.execute("PRAGMA table_info(ledger)").fetchall()}
        if not have:
            raise NoData(f"{db_path} has no ledger table (not a station database?)")
        # Rows written before the context columns existed read as unknown (NULL).
        extra = [c if c in have else "NULL" for c in
                 ("pv_kwh", "soc_pct", "import_cap_kw", "import_price_eur_kwh",
                  "refill_eur")]  # fmt: skip
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        period = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        rows = conn.execute(
            "SELECT interval, import_kwh, export_kwh, energy_cost_eur, co2_kg, peak_kw,"
            " battery_charge_kwh, battery_discharge_kwh, session_kwh, " + ", ".join(extra) +
            " FROM ledger WHERE period_start = ? AND policy = 'actual' ORDER BY interval",
            [period],
        ).fetchall()  # fmt: skip
        baseline = conn.execute(
            "SELECT SUM(energy_cost_eur) FROM ledger WHERE period_start = ? AND policy = ?",
            [period, "uncontrolled"],
        ).fetchone()[0]
    except sqlite3.Error as exc:
        raise NoData(f"cannot read the ledger in {db_path}: {exc}") from None
    finally:
        conn.close()
    if not rows:
        raise NoData(f"no ledger data for {day.isoformat()} in {db_path}")

    def per_kw(kwh: float | None) -> float | None:
        return None if kwh is None else kwh / slot_h

    ev_kwh = [sum(json.loads(r[8] or "{}").values()) for r in rows]
    totals = {
        "importKwh": sum(r[1] for r in rows),
        "exportKwh": sum(r[2] for r in rows),
        "evKwh": sum(ev_kwh),
        "pvKwh": sum(r[9] or 0.0 for r in rows),
        "batteryChargeKwh": sum(r[6] for r in rows),
        "batteryDischargeKwh": sum(r[7] for r in rows),
        "energyCostEur": sum(r[3] for r in rows),
        "peakKw": max(r[5] for r in rows),
        "co2Kg": sum(r[4] for r in rows),
        "intervals": len(rows),
    }
    # The battery's refill to the day's starting energy, charged when the day closed (on its
    # last row; NULL everywhere before then, on older rows and without a battery).
    refills = [r[13] for r in rows if r[13] is not None]
    if refills:
        totals["refillEur"] = sum(refills)
    if baseline is not None:
        totals["baselineCostEur"] = baseline
        totals["savingsEur"] = baseline - totals["energyCostEur"] - totals.get("refillEur", 0.0)
    return Day(
        day=day,
        station=station,
        hours=[r[0] * slot_h for r in rows],
        slot_h=slot_h,
        import_kw=[r[1] / slot_h for r in rows],
        export_kw=[r[2] / slot_h for r in rows],
        ev_kw=[kwh / slot_h for kwh in ev_kwh],
        pv_kw=[per_kw(r[9]) for r in rows],
        soc_pct=[r[10] for r in rows],
        cap_kw=[r[11] for r in rows],
        price=[r[12] for r in rows],
        totals=totals,
    )


def _steps(hours: list[float], values: list[Any], slot_h: float) -> tuple[list[float], list[Any]]:
    """Each interval as a flat segment over [start, end); a gap between recorded intervals
    (the agent was not running) breaks the line instead of bridging it."""
    xs: list[float] = []
    ys: list[Any] = []
    for i, (h, v) in enumerate(zip(hours, values, strict=True)):
        if i and h - hours[i - 1] > slot_h + 1e-9:
            xs.append(hours[i - 1] + slot_h)
            ys.append(float("nan"))
        y = float("nan") if v is None else v
        xs += [h, h + slot_h]
        ys += [y, y]
    return xs, ys


def figure(d: Day) -> Any:
    """The day as a matplotlib figure: powers on top, SoC and price below."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a station
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    title = f"Station day {d.day.isoformat()} (UTC)"
    fig.suptitle(title if d.station is None else f"{d.station}: {title}")

    def step(ax: Any, values: list[Any], **kw: Any) -> None:
        ax.plot(*_steps(d.hours, values, d.slot_h), **kw)

    step(top, d.import_kw, color="tab:red", lw=1.8, label="grid import")
    if any(v is not None for v in d.cap_kw):
        step(top, d.cap_kw, color="black", lw=1.2, ls="--", label="import cap")
    step(top, d.ev_kw, color="tab:blue", lw=1.4, label="EV charging")
    if any(v for v in d.pv_kw):
        step(top, d.pv_kw, color="goldenrod", lw=1.4, label="PV")
    if max(d.export_kw) > 0.05:  # only a day that really exported
        step(top, [-v for v in d.export_kw], color="tab:green", lw=1.0, label="grid export (-)")
    top.set_ylabel("kW (15-min average)")
    # Room above the highest line for the legend.
    highest = max(v for series in (d.import_kw, d.ev_kw, d.cap_kw, d.pv_kw)
                  for v in series if v is not None)  # fmt: skip
    top.set_ylim(top=max(1.0, highest) * 1.25)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", ncol=5, fontsize="small")

    if any(v is not None for v in d.soc_pct):
        step(bottom, d.soc_pct, color="tab:purple", lw=1.6, label="battery SoC")
        bottom.set_ylim(0, 100)
    bottom.set_ylabel("battery SoC %")
    bottom.grid(alpha=0.3)
    price_ax = bottom.twinx()
    if any(v is not None for v in d.price):
        price_ax.plot(*_steps(d.hours, d.price, d.slot_h), color="tab:orange", lw=1.4,
                      label="import price")  # fmt: skip
    price_ax.set_ylabel("import price EUR/kWh")
    handles = bottom.get_legend_handles_labels()[0] + price_ax.get_legend_handles_labels()[0]
    if handles:
        bottom.legend(handles=handles, loc="upper left", fontsize="small", ncol=2)
    bottom.set_xlim(0, 24)
    bottom.set_xticks(range(0, 25, 2))
    bottom.set_xlabel("hour of the day (UTC)")
    return fig


TOTAL_ROWS = (
    ("importKwh", "grid import", "kWh", 1),
    ("exportKwh", "grid export", "kWh", 1),
    ("evKwh", "EV charging", "kWh", 1),
    ("pvKwh", "PV", "kWh", 1),
    ("batteryChargeKwh", "battery charged", "kWh", 1),
    ("batteryDischargeKwh", "battery discharged", "kWh", 1),
    ("peakKw", "peak 15-min import", "kW", 1),
    ("energyCostEur", "energy cost (without demand charge)", "EUR", 2),
    ("refillEur", "battery refill to the day's starting energy", "EUR", 2),
    ("baselineCostEur", "uncontrolled counterfactual's energy cost", "EUR", 2),
    ("savingsEur", "energy cost saved (net of the refill)", "EUR", 2),
    ("co2Kg", "CO2", "kg", 1),
    ("intervals", "15-minute intervals recorded", "", 0),
)


def html_page(d: Day, svg: str) -> str:
    rows = "\n".join(
        f"<tr><th>{html.escape(label)}</th><td>{d.totals[key]:,.{digits}f}</td>"
        f"<td>{unit}</td></tr>"
        for key, label, unit, digits in TOTAL_ROWS
        if key in d.totals
    )
    title = f"Station day {d.day.isoformat()} (UTC)"
    if d.station:
        title = f"{d.station}: {title}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
th, td {{ padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; }}
th {{ text-align: left; font-weight: normal; }} td {{ text-align: right; }}
svg {{ max-width: 100%; height: auto; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
{svg}
<h2>Totals</h2>
<table id="totals">
{rows}
</table>
<p>From the station's savings ledger (15-minute intervals, policy "actual").</p>
</body></html>
"""


def write(d: Day, out: Path) -> None:
    import io

    fig = figure(d)
    if out.suffix.lower() == ".png":
        fig.savefig(out, format="png", dpi=110)
        return
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # inline: no XML declaration or doctype inside HTML
    out.write_text(html_page(d, svg), encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    day = parse_day(args.day)
    if args.out.suffix.lower() not in FORMATS:
        raise UsageError(f"--out: the file must end in .png or .html, got {str(args.out)!r}")
    try:
        db_path, station = _db_path(args)
    except _ConfigProblem as exc:
        print(f"sems report: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        d = load_day(db_path, day, station)
    except NoData as exc:
        print(f"sems report: {exc}", file=sys.stderr)
        return 1
    try:
        write(d, args.out)
    except OSError as exc:
        print(f"sems report: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        from agent.cli.commands._output import print_json

        print_json({"out": str(args.out), "day": day.isoformat(), "stationId": station,
                    "totals": d.totals})
        return 0
    print(f"wrote {args.out} ({d.totals['intervals']} intervals, "
          f"{d.totals['importKwh']:.1f} kWh imported, {d.totals['evKwh']:.1f} kWh to EVs)")  # fmt: skip
    return 0
