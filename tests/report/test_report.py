"""`sems report`: a station day recorded by the real control loop and savings ledger (the
cycle harness of tests/agent plays the chargers, meters and clock), then plotted by the CLI
in a subprocess as PNG and as one self-contained HTML page.

The day (UTC, 2026-06-17, 05:00 to 21:00 in 5 s cycles): a three-price tariff, PV over the
middle of the day, a battery whose SoC falls in the evening, two EVs, and a demand-response
cap from 17:00 to 18:00 that the ledger must record as the import cap.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))  # the cycle harness
from cycle_helpers import Station, settings  # noqa: E402

from agent.cli.commands.report import load_day, parse_day  # noqa: E402
from agent.energy.ledger_recorder import LedgerRecorder  # noqa: E402
from agent.model.clock import ManualClock  # noqa: E402
from agent.model.snapshot import BatteryState  # noqa: E402
from agent.store import connect  # noqa: E402
from agent.store.signals import PowerCap, PriceSlot, Signals, Tariff  # noqa: E402

DAY = datetime(2026, 6, 17, tzinfo=UTC)
STEP = 5.0  # seconds per cycle: the ledger integrates gaps up to 5 s
CP1_1, CP2_1 = ("CP1", 1), ("CP2", 1)


def _price(hour: int) -> float:
    return 0.15 if hour < 7 else 0.45 if 17 <= hour < 20 else 0.30


def record_day(db_path: Path) -> tuple[LedgerRecorder, float]:
    """The recorded day, and the kWh imported as the played meter measured it (the truth
    the report's total must match, summed here independently of the ledger)."""
    cfg = settings(station={"battery": {"inverter": "inv", "bms": "bms", "max_charge_kw": 40,
                                        "max_discharge_kw": 40, "capacity_kwh": 80}})  # fmt: skip
    st = Station(cfg=cfg, clock=ManualClock(wall=DAY + timedelta(hours=5)), base_kw=25.0)
    st.db = connect(db_path)  # the ledger goes to a file the CLI can read
    signals = Signals(st.db)
    st.controller.signals = signals  # the control loop obeys the cap, the ledger records it
    signals.set_tariff(Tariff(id="t", slots=[
        PriceSlot(start=DAY + timedelta(hours=h), end=DAY + timedelta(hours=h + 1),
                  import_eur_kwh=_price(h), export_eur_kwh=0.05) for h in range(24)]))  # fmt: skip
    signals.set_power_cap(PowerCap(id="dr", cap_kw=60.0, start=DAY + timedelta(hours=17),
                                   end=DAY + timedelta(hours=18)))  # fmt: skip
    rec = LedgerRecorder(cfg, st.db, signals)
    soc = 80.0
    imported_kwh = 0.0
    for hour in range(5, 21):
        st.pv_kw = max(0.0, 30.0 * (1 - abs(hour + 0.5 - 13) / 7))
        power = 10.0 if hour >= 17 else 0.0  # evening discharge
        if hour == 8:
            st.plug(CP1_1)
        if hour == 12:
            st.unplug(CP1_1)
            st.plug(CP2_1)
        if hour == 19:
            st.unplug(CP2_1)
        for _ in range(round(3600 / STEP)):
            soc -= power * STEP / 3600 / 80 * 100
            st.battery = BatteryState(soc=soc, max_charge_kw=40, max_discharge_kw=40,
                                      power_kw=power)  # fmt: skip
            d = st.cycle(advance=STEP, follow=True)
            imported_kwh += max(0.0, d.snapshot.grid_kw or 0.0) * STEP / 3600
            rec.observe(d)
    rec.flush()
    st.db.conn.close()
    return rec, imported_kwh


@pytest.fixture(scope="module")
def day_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LedgerRecorder, float]:
    path = tmp_path_factory.mktemp("report") / "agent.db"
    return path, *record_day(path)


def sems(*args: str) -> subprocess.CompletedProcess[str]:
    # The installed console script (`python -m agent.cli` would load agent.cli twice, as
    # __main__ and as agent.cli, and its UsageError would not be the one raised).
    sems_script = Path(sys.executable).parent / "sems"
    return subprocess.run([str(sems_script), "report", *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_the_ledger_records_what_the_report_plots(day_db):
    path, _, imported_kwh = day_db
    d = load_day(path, DAY.date())
    # 05:00 .. 21:00, the last interval only the flushed sample at 21:00.
    assert d.hours[0] == 5.0 and d.hours[-1] == 21.0
    at = {h: i for i, h in enumerate(d.hours)}
    # The tariff's price, the DR cap between 17:00 and 18:00, the grid capacity elsewhere.
    assert d.price[at[6.0]] == 0.15 and d.price[at[12.0]] == 0.30 and d.price[at[18.0]] == 0.45
    assert [d.cap_kw[at[h]] for h in (16.75, 17.0, 17.75, 18.0)] == [100.0, 60.0, 60.0, 100.0]
    # PV (hourly steps of a triangle peaking at 13:00) and the battery's falling evening SoC.
    assert d.pv_kw[at[12.5]] == pytest.approx(30.0 * (1 - 0.5 / 7))
    assert d.pv_kw[at[5.0]] == 0.0
    assert d.soc_pct[at[16.75]] == pytest.approx(80.0)
    assert d.soc_pct[at[20.75]] == pytest.approx(80.0 - 4 * 10 / 80 * 100, abs=0.1)
    # The control loop kept the import under the cap; EVs charged while plugged in.
    assert max(d.import_kw[at[17.0]:at[18.0]]) <= 60.0 + 1e-6
    assert d.ev_kw[at[9.0]] > 10 and d.ev_kw[at[6.0]] == 0.0
    # The day's import total against the meter's own kWh (summed while the day was played).
    assert d.totals["importKwh"] == pytest.approx(imported_kwh, rel=0.01)


def test_png_and_html_from_the_cli(day_db, tmp_path):
    path, rec, _ = day_db
    png, page = tmp_path / "day.png", tmp_path / "day.html"
    for out in (png, page):
        done = sems("--day", "2026-06-17", "--out", str(out), "--db", str(path))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"wrote {out}")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    assert "<img" not in text and "src=" not in text  # self-contained: nothing to fetch
    totals = load_day(path, DAY.date()).totals
    # The day's totals as the recorder itself summed them.
    summary = rec.summary()
    assert totals["importKwh"] == pytest.approx(summary["importKwh"], abs=1e-3)
    for key in ("importKwh", "evKwh", "pvKwh", "batteryDischargeKwh", "energyCostEur",
                "baselineCostEur", "savingsEur"):  # fmt: skip
        digits = 2 if key.endswith("Eur") else 1
        assert f"<td>{totals[key]:,.{digits}f}</td>" in text, key
    assert totals["savingsEur"] > 0  # the battery and the cap beat the counterfactual


def test_settings_file_gives_the_database_and_station(day_db, tmp_path):
    path, _, _ = day_db
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[station]
id = "ST-7"
grid_capacity_kw = 100
grid_meter = "grid"
pessimistic_base_load_kw = 20
[[station.chargers]]
id = "CP1"
device = "cp1"
max_power_kw = 50
[[devices]]
name = "grid"
kind = "meter"
profile = "sim-meter"
endpoint = "tcp://127.0.0.1:1502"
[[devices]]
name = "cp1"
kind = "charger"
profile = "sim-charger"
endpoint = "tcp://127.0.0.1:1503"
[storage]
db_path = "{path}"
""")
    out = tmp_path / "day.html"
    done = sems("--day", "2026-06-17", "--out", str(out), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "<h1>ST-7: Station day 2026-06-17 (UTC)</h1>" in out.read_text()


def test_clear_errors(day_db, tmp_path):
    path, _, _ = day_db
    cases = [  # (arguments, exit status, message)
        (("--day", "2026-06-18", "--out", str(tmp_path / "a.png"), "--db", str(path)), 1,
         f"sems report: no ledger data for 2026-06-18 in {path}"),
        (("--day", "17/06/2026", "--out", str(tmp_path / "a.png"), "--db", str(path)), 2,
         "sems report: --day: expected YYYY-MM-DD, 'today' or 'yesterday', got '17/06/2026'"),
        (("--day", "2026-06-17", "--out", str(tmp_path / "a.svg"), "--db", str(path)), 2,
         f"sems report: --out: the file must end in .png or .html, got '{tmp_path / 'a.svg'}'"),
        (("--day", "2026-06-17", "--out", str(tmp_path / "a.png"), "--db", str(tmp_path / "x")),
         1, f"sems report: no station database at {tmp_path / 'x'}"),
        (("--day", "2026-06-17", "--out", str(tmp_path / "no" / "a.png"), "--db", str(path)), 1,
         f"sems report: cannot write {tmp_path / 'no' / 'a.png'}: No such file or directory"),
    ]  # fmt: skip
    for args, status, message in cases:
        done = sems(*args)
        assert (done.returncode, done.stderr.strip()) == (status, message)
    assert not (tmp_path / "x").exists()  # read-only: no database created by a typo


def test_older_database_gains_the_columns_and_still_reports(tmp_path):
    """A ledger written before the context columns existed: connect() adds them, and the
    report draws what the old rows know (no PV, SoC, cap or price)."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE ledger (period_start TEXT NOT NULL, policy TEXT NOT NULL,
        interval INTEGER NOT NULL, import_kwh REAL NOT NULL, export_kwh REAL NOT NULL,
        energy_cost_eur REAL NOT NULL, co2_kg REAL NOT NULL, peak_kw REAL NOT NULL,
        battery_charge_kwh REAL NOT NULL DEFAULT 0, battery_discharge_kwh REAL NOT NULL DEFAULT 0,
        session_kwh TEXT NOT NULL DEFAULT '{}', v2g_kwh TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (period_start, policy, interval))""")  # fmt: skip
    conn.execute("INSERT INTO ledger VALUES ('2026-06-17T00:00:00.000Z', 'actual', 40, 5.0, 0, "
                 "1.5, 1.0, 20.0, 0, 0, '{\"s1\": 2.5}', '{}')")  # fmt: skip
    conn.commit()
    conn.close()
    d = load_day(path, DAY.date())  # before any migration: the columns read as unknown
    assert (d.pv_kw, d.cap_kw, d.import_kw, d.ev_kw) == ([None], [None], [20.0], [10.0])
    connect(path).conn.close()
    cols = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(ledger)")}
    assert {"pv_kwh", "soc_pct", "import_cap_kw", "import_price_eur_kwh"} <= cols
    done = sems("--day", "2026-06-17", "--out", str(tmp_path / "old.html"), "--db", str(path))
    assert done.returncode == 0, done.stderr
    assert "<td>5.0</td>" in (tmp_path / "old.html").read_text()


def test_a_day_whose_battery_ended_short_reports_its_refill(tmp_path):
    """Issue 16: the day's refill (charged by the recorder after midnight, stored on the
    day's last row) is a line of the report, and the savings are net of it."""
    cfg = settings(station={"battery": {"inverter": "inv", "bms": "bms", "max_charge_kw": 40,
                                        "max_discharge_kw": 40, "capacity_kwh": 80}})  # fmt: skip
    st = Station(cfg=cfg, clock=ManualClock(wall=DAY + timedelta(hours=23, minutes=30)),
                 base_kw=25.0)  # fmt: skip
    st.db = connect(tmp_path / "agent.db")
    sent: list[dict] = []
    rec = LedgerRecorder(cfg, st.db, Signals(st.db), None, lambda kind, p: sent.append(p))
    for i in range(round(35 * 60 / STEP)):  # 23:30 .. 00:05, 60 % down to 50 % at 23:40
        soc = 60.0 if i < 120 else 50.0
        st.battery = BatteryState(soc=soc, max_charge_kw=40, max_discharge_kw=40, power_kw=0.0)
        rec.observe(st.cycle(advance=STEP, follow=True))
    rec.flush()  # stopped at 00:05: the day's refill, priced off the loop, is stored by then
    st.db.conn.close()
    day = next(p for p in sent if p["period"] == "day")
    assert day["refillEur"] > 0
    totals = load_day(tmp_path / "agent.db", DAY.date()).totals
    assert totals["refillEur"] == pytest.approx(day["refillEur"], abs=1e-3)
    assert totals["savingsEur"] == pytest.approx(
        totals["baselineCostEur"] - totals["energyCostEur"] - totals["refillEur"])  # fmt: skip
    done = sems("--day", "2026-06-17", "--out", str(tmp_path / "day.html"), "--db",
                str(tmp_path / "agent.db"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "battery refill to the day&#x27;s starting energy" in (tmp_path / "day.html").read_text()


def test_day_words():
    today = datetime(2026, 3, 1, tzinfo=UTC).date()
    assert parse_day("today", today).isoformat() == "2026-03-01"
    assert parse_day("yesterday", today).isoformat() == "2026-02-28"
    assert parse_day("2024-02-29").isoformat() == "2024-02-29"


def test_restart_mid_interval_keeps_the_context(tmp_path):
    """Shutdown at 12:05 and restart: the 12:00 interval's PV adds both parts, its cap is
    the lower of both, its SoC the last reading."""
    st = Station(clock=ManualClock(wall=DAY + timedelta(hours=12)), base_kw=30.0, pv_kw=20.0)
    st.db = connect(tmp_path / "agent.db")
    st.battery = BatteryState(soc=55.0, max_charge_kw=0, max_discharge_kw=0, power_kw=0.0)
    rec = LedgerRecorder(st.cfg, st.db, Signals(st.db))
    for _ in range(round(300 / STEP)):  # 12:00 .. 12:05
        rec.observe(st.cycle(advance=STEP))
    rec.flush()
    signals = Signals(st.db)
    signals.set_power_cap(PowerCap(id="dr", cap_kw=70.0, start=DAY + timedelta(hours=12),
                                   end=DAY + timedelta(hours=13)))  # fmt: skip
    st.controller.signals = signals
    st.battery = BatteryState(soc=54.0, max_charge_kw=0, max_discharge_kw=0, power_kw=0.0)
    rec = LedgerRecorder(st.cfg, st.db, signals)
    for _ in range(round(900 / STEP)):  # 12:05 .. 12:20: closes the 12:00 interval
        rec.observe(st.cycle(advance=STEP))
    st.db.conn.close()
    d = load_day(tmp_path / "agent.db", DAY.date())
    assert d.hours[0] == 12.0
    # 20 kW for 15 minutes, less the first 5 s before any reading and 5 s at the restart.
    assert d.pv_kw[0] * 0.25 == pytest.approx(20.0 * (900 - 2 * STEP) / 3600)
    assert (d.cap_kw[0], d.soc_pct[0], d.price[0]) == (70.0, 54.0, 0.25)
