"""`make bench` rewrites docs/performance.md; the hand-written notes between its markers
(side-by-side runs, what was tried and not kept) stay at the end of their sections. Before,
the next run dropped them (the tree kernel's history of 2026-12-07 among them)."""

from __future__ import annotations

from pathlib import Path

from bench import run_all

DOC = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
DATA = {"machine": {"date": "2026-12-08 10:00 UTC", "nproc": 2, "cpu": "test CPU", "memGb": 23.5,
                    "kernel": "6", "python": "3.11", "loadBefore": [1.0, 1.0, 1.0],
                    "loadAfter": [1.0, 1.0, 1.0], "totalWallS": 10.0},
        "benches": {}}  # fmt: skip
NOTE = "<!-- notes -->\nBy hand: 1.05x side by side.\n<!-- /notes -->"


def test_a_note_stays_at_the_end_of_its_section():
    old = f"# P\n\n## A\n\ntable a\n\n{NOTE}\n\n## B\n\ntable b\n"
    new = "# P\n\n## A\n\ntable a2\n\n## B\n\ntable b2\n"
    assert run_all.keep_notes(old, new) == f"# P\n\n## A\n\ntable a2\n\n{NOTE}\n\n## B\n\ntable b2\n"


def test_two_notes_keep_their_order_and_a_section_gone_keeps_its_notes():
    second = NOTE.replace("1.05x", "0.97x, not kept")
    old = f"## A\n\n{NOTE}\n\n{second}\n\n## Gone\n\n{NOTE}\n"
    kept = run_all.keep_notes(old, "## A\n\nt\n")
    assert kept.index("1.05x") < kept.index("0.97x")
    assert kept.endswith(f"## Gone\n\n{NOTE}\n")
    assert run_all.keep_notes("## A\n\nno notes\n", "## A\n\nt\n") == "## A\n\nt\n"


def test_the_docs_notes_survive_a_new_run():
    text = DOC.read_text()
    blocks = [b for sec in run_all._notes_by_section(text).values() for b in sec]
    assert len(blocks) >= 2  # the tree kernel's and the depot-scale loop's
    doc = run_all.keep_notes(text, run_all.render(DATA))
    for block in blocks:
        assert block in doc
    # and a second run changes nothing more
    assert run_all.keep_notes(doc, run_all.render(DATA)) == doc
