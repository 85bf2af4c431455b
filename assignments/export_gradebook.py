"""Turn the grades of one assignment into a Canvas gradebook CSV (an LMS import).

    python assignments/export_gradebook.py grades/scores.csv --roster roster.csv \\
        --assignment "Assignment 1: hardness" --assignment-id 4521 --out canvas-hardness.csv

Reads the course's ``scores.csv`` or otter's ``final_grades.csv`` (both written by
``python assignments/build.py grade``; otter's own ``otter grade`` writes the latter) and a
roster: any CSV with a ``Student`` column and the column that names each student's
submission, e.g. the gradebook that Canvas exports (``Student, ID, SIS User ID, SIS Login ID,
Section, ...``). Writes Canvas's gradebook layout: ``Student, ID, SIS User ID, SIS Login ID,
Section, <Assignment> (<id>)``, a ``Points Possible`` row, then one row per roster student
in roster order. Canvas updates the assignment with that id (without ``--assignment-id`` it
creates a new assignment with that name and points possible).

Matching: a submission ``alice.ipynb`` belongs to the roster row whose ``--match`` column
(default ``SIS Login ID``) is ``alice`` (case and surrounding spaces ignored).
``--match canvas`` reads Canvas's bulk-download names instead
(``doealice_12345_67890_hardness.ipynb``, ``doealice_LATE_12345_...``): the number after the
name is the Canvas user id, matched with the roster's ``ID``.

Students on the roster without a submission get an empty cell (``--missing zero``: 0). A
submission whose grading failed (an ``error`` / ``grading_status`` other than Completed: a
crash, a time-out, not a notebook) gets an empty cell and a warning, so that an instructor
decides (``--failed zero``: its recorded score). ``--out-of P`` rescales every score to P
points. Bad input (an unknown file layout, a submission that matches no roster row or two
submissions one row) stops with exit status 2 and one line saying what to fix; nothing is
written then.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
from pathlib import Path

CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_ROW = "    Points Possible"  # as Canvas writes it in its own exports
CANVAS_NAME = re.compile(r"^[^_]+_(?:late_)?(\d+)_\d+_", re.I)


class GradebookError(Exception):
    """Bad input: the message says what is wrong and how to fix it."""


def _read_csv(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise GradebookError(f"{what} {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GradebookError(f"{what} {path}: not UTF-8 text ({exc.reason}); save it as CSV UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise GradebookError(f"{what} {path}: empty file, expected a CSV with a header row")
    reader.fieldnames = header
    rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return header, rows


def _number(value: str, where: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise GradebookError(f"{where}: {value!r} is not a number") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise GradebookError(f"{where}: {value!r} is not a finite number")
    return x


def read_scores(path: Path) -> tuple[list[dict], float | None]:
    """Submissions (``file``, ``score``, ``failed``) and the points possible, from either layout."""
    header, rows = _read_csv(path, "scores")
    if {"submission", "total", "possible", "error"} <= set(header):  # the course's scores.csv
        subs = [{"file": r["submission"], "score": _number(r["total"], f"{path}, {r['submission']}, total"),
                 "failed": r["error"]} for r in rows]
        possible = {_number(r["possible"], f"{path}, {r['submission']}, possible") for r in rows
                    if not r["error"] and r["possible"]}
        if len(possible) > 1:
            raise GradebookError(f"{path}: the submissions have different points possible {sorted(possible)}: "
                                 "grade them with one autograder, or pass --points-possible")
        return subs, possible.pop() if possible else None
    if {"file", "total_points_earned"} <= set(header):  # otter's final_grades.csv
        status = "grading_status" in header
        possible, subs = None, []
        for r in rows:
            if r["file"] == "points-per-question":
                possible = _number(r["total_points_earned"], f"{path}, points-per-question row")
                continue
            state = r.get("grading_status", "") if status else ""
            subs.append({"file": Path(r["file"]).name,
                         "score": _number(r["total_points_earned"] or "0", f"{path}, {r['file']}"),
                         "failed": "" if state in ("", "Completed") else state})
        return subs, possible
    raise GradebookError(
        f"{path}: neither the course's scores.csv (columns submission, ..., total, possible, error) nor "
        f"otter's final_grades.csv (file, ..., total_points_earned); its columns are {', '.join(header[:8])}")


def read_roster(path: Path, match: str) -> list[dict[str, str]]:
    """Roster rows (Canvas's meta rows such as Points Possible dropped); checks the columns."""
    header, rows = _read_csv(path, "roster")
    key = "ID" if match == "canvas" else match
    if "Student" not in header:
        raise GradebookError(f"roster {path}: no 'Student' column (columns: {', '.join(header[:8])}); "
                             "export the Canvas gradebook or add one")
    if key not in header:
        raise GradebookError(f"roster {path}: no {key!r} column to match submissions with (columns: "
                             f"{', '.join(header[:8])}); pass --match COLUMN")
    if not {"ID", "SIS User ID", "SIS Login ID"} & set(header):
        raise GradebookError(f"roster {path}: Canvas needs one of ID, SIS User ID, SIS Login ID to find a student")
    students = [r for r in rows if r["Student"] and r["Student"].strip().lower() != "points possible"
                and r[key]]
    if not students:
        raise GradebookError(f"roster {path}: no student rows")
    seen: dict[str, str] = {}
    for r in students:
        k = r[key].strip().lower()
        if k in seen:
            raise GradebookError(f"roster {path}: {key} {r[key]!r} appears twice ({seen[k]}, {r['Student']})")
        seen[k] = r["Student"]
    return students


def _submission_key(name: str, match: str) -> str | None:
    if match == "canvas":
        m = CANVAS_NAME.match(name)
        return m.group(1) if m else None
    stem = name[: -len(".ipynb")] if name.lower().endswith(".ipynb") else name
    return stem.strip().lower()


def _fmt(x: float) -> str:
    return f"{round(x, 2):.2f}".rstrip("0").rstrip(".")


def export(scores: Path, roster: Path, assignment: str, assignment_id: str | None = None, match: str = "SIS Login ID",
           points_possible: float | None = None, out_of: float | None = None, missing: str = "blank",
           failed: str = "blank", allow_unmatched: bool = False) -> tuple[list[list[str]], list[str]]:
    """The Canvas CSV's rows and the warnings; raises ``GradebookError`` on bad input."""
    if not assignment.strip():
        raise GradebookError("--assignment: give the assignment's name as Canvas shows it")
    if assignment_id is not None and not re.fullmatch(r"\d+", assignment_id):
        raise GradebookError(f"--assignment-id {assignment_id!r}: Canvas ids are numbers (see the assignment's URL)")
    for name, value in (("--points-possible", points_possible), ("--out-of", out_of)):
        if value is not None and not value > 0:
            raise GradebookError(f"{name} {value}: must be a positive number of points")
    subs, possible = read_scores(scores)
    possible = points_possible if points_possible is not None else possible
    if possible is None:
        raise GradebookError(f"{scores}: cannot tell the points possible (every submission failed): "
                             "pass --points-possible")
    students = read_roster(roster, match)
    key_col = "ID" if match == "canvas" else match
    by_key = {r[key_col].strip().lower(): r for r in students}
    warnings: list[str] = []
    unmatched, score_of, owner = [], {}, {}
    for s in subs:
        key = _submission_key(s["file"], match)
        if key is None or key not in by_key:
            unmatched.append(s["file"])
            continue
        if key in owner:
            raise GradebookError(f"{owner[key]} and {s['file']} both belong to {by_key[key]['Student']}: "
                                 "keep one submission per student")
        owner[key] = s["file"]
        if s["failed"]:
            warnings.append(f"{s['file']} ({by_key[key]['Student']}): grading failed ({s['failed'][:80]}); "
                            + ("recorded score exported" if failed == "zero" else "left empty, grade it by hand"))
            if failed != "zero":
                continue
        if s["score"] > possible + 1e-9 or s["score"] < 0:
            raise GradebookError(f"{s['file']}: score {s['score']:g} outside 0..{possible:g} points possible")
        score_of[key] = s["score"]
    if unmatched:
        hint = ("Canvas download names look like doealice_12345_67890_name.ipynb" if match == "canvas"
                else f"the file name without .ipynb must equal the roster's {match!r}")
        msg = (f"{len(unmatched)} submission(s) match no roster row ({', '.join(unmatched[:5])}"
               f"{', ...' if len(unmatched) > 5 else ''}): {hint}; or pass --match")
        if not allow_unmatched:
            raise GradebookError(msg + " (or --allow-unmatched)")
        warnings.append(msg + "; not exported")
    scale = (out_of / possible) if out_of else 1.0
    header_name = f"{assignment.strip()} ({assignment_id})" if assignment_id else assignment.strip()
    rows = [[*CANVAS_COLUMNS, header_name], [POINTS_ROW, "", "", "", "", _fmt(possible * scale)]]
    for r in students:
        key = r[key_col].strip().lower()
        if key in score_of:
            cell = _fmt(score_of[key] * scale)
        else:
            cell = "0" if missing == "zero" and key not in owner else ""
        rows.append([r.get(c, "") for c in CANVAS_COLUMNS] + [cell])
    return rows, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores", type=Path, help="scores.csv or final_grades.csv from assignments/build.py grade")
    parser.add_argument("--roster", type=Path, required=True, help="CSV with Student and the --match column")
    parser.add_argument("--assignment", required=True, help="the assignment's name in the LMS")
    parser.add_argument("--assignment-id", help="its Canvas id (the number in its URL)")
    parser.add_argument("--match", default="SIS Login ID",
                        help="roster column equal to the submission file name without .ipynb, or 'canvas' for "
                             "Canvas download names (default: SIS Login ID)")
    parser.add_argument("--points-possible", type=float, help="override the points possible read from the scores")
    parser.add_argument("--out-of", type=float, help="rescale scores to this many points")
    parser.add_argument("--missing", choices=("blank", "zero"), default="blank",
                        help="cell for a student without a submission (default: blank)")
    parser.add_argument("--failed", choices=("blank", "zero"), default="blank",
                        help="cell for a submission whose grading failed (default: blank, with a warning)")
    parser.add_argument("--allow-unmatched", action="store_true", help="drop submissions not on the roster")
    parser.add_argument("--out", type=Path, help="output CSV (default: standard output)")
    args = parser.parse_args(argv)
    try:
        rows, warnings = export(args.scores, args.roster, args.assignment, args.assignment_id, args.match,
                                args.points_possible, args.out_of, args.missing, args.failed, args.allow_unmatched)
        if args.out is not None and not args.out.parent.is_dir():
            raise GradebookError(f"--out {args.out}: folder {args.out.parent} does not exist")
    except GradebookError as exc:
        print(f"export_gradebook: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"export_gradebook: warning: {w}", file=sys.stderr)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    if args.out is None:
        sys.stdout.write(buf.getvalue())
    else:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, args.out)
        graded = sum(1 for r in rows[2:] if r[-1] != "")
        print(f"wrote {args.out}: {len(rows) - 2} students, {graded} with a score", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
