"""Security review, finding 7: staff ids, windows and reason codes come from
devices and pairing; in `hcp report monthly` they must stay text. No xlsx
cell may become a formula or a link, and CSV cells that a spreadsheet would
read as a formula are neutralised with a leading quote (numbers stay numbers)."""

import csv
import datetime

import openpyxl
from click.testing import CliRunner

from gateway import report as rep
from gateway.store import db
from tools.report_cli import report

TZ = datetime.timezone(datetime.timedelta(hours=8))
EVIL = ['=HYPERLINK("http://evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tTAB", "\rCR"]
EVIL_WINDOW = "http://evil.example/w"
EVIL_REASON = "=1+1"


def _seed(path):
    conn = db.open_db(path)
    when = datetime.datetime(2026, 11, 5, 10, 0, tzinfo=TZ).timestamp()
    rows = []
    for i, staff in enumerate(EVIL + ["12345"]):
        window = EVIL_WINDOW if i == 0 else "A%02d" % i
        # Two 差评 each: every staff id also lands in the rule-breach sheet.
        for k in range(2):
            n = 10 * i + k
            rows.append(("E:%d" % n, "D%d" % i, 1, n, "rating", 1, EVIL_REASON + ",R1", "I%d" % n, int(when), 0,
                         when + n, when + n, staff, window))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events (event_id, device_id, boot, event_seq, kind, score, reasons,"
                     " invitation, device_time, uptime_ms, press_time, received_at, staff_id, window)"
                     " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    conn.close()


def _monthly(tmp_path, fmt):
    path = tmp_path / "hall.db"
    if not path.exists():
        _seed(path)
    out = tmp_path / ("m." + fmt)
    res = CliRunner().invoke(report, ["monthly", "--month", "2026-11", "--db", str(path), "--format", fmt,
                                      "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_xlsx_cells_from_the_database_are_strings_never_formulas_or_links(tmp_path):
    wb = openpyxl.load_workbook(_monthly(tmp_path, "xlsx"))
    ws = wb["评价数据统计表"]
    header = [c.value for c in ws[1]]
    col = {name: header.index(name) for name in ("工作人员", "窗口", "差评原因", "差评")}
    staff_cells = {}
    for row in ws.iter_rows(min_row=2):
        if row[0].value == "staff":
            # xlsx stores a CR as _x000D_, which openpyxl leaves as is.
            staff_cells[str(row[col["工作人员"]].value).replace("_x000D_", "\r")] = row
    assert set(staff_cells) == set(EVIL) | {"12345"}
    for row in staff_cells.values():
        for name in ("工作人员", "窗口", "差评原因"):
            cell = row[col[name]]
            assert cell.data_type == "s", (name, cell.value, cell.data_type)
            assert cell.hyperlink is None
        assert row[col["差评"]].data_type == "n" and row[col["差评"]].value == 2
    assert staff_cells['=HYPERLINK("http://evil","x")'][col["窗口"]].value == EVIL_WINDOW
    assert staff_cells["12345"][col["工作人员"]].value == "12345"  # an id, not the number 12345
    rules = wb["规则提示"]
    subjects = {}
    for row in rules.iter_rows(min_row=2):
        assert all(c.data_type in ("s", "n") for c in row), [(c.value, c.data_type) for c in row]
        subjects[str(row[1].value).replace("_x000D_", "\r")] = row
    for staff in EVIL:
        assert subjects[staff][1].data_type == "s" and subjects[staff][2].value == 2


def test_csv_cells_that_start_a_formula_get_a_quote_and_numbers_stay_numbers(tmp_path):
    out = _monthly(tmp_path, "csv")
    with open(out, newline="", encoding="utf-8-sig") as f:
        table = list(csv.reader(f))
    header = table[0]
    staff_rows = {r[header.index("工作人员")]: r for r in table[1:] if r[:1] == ["staff"]}
    assert set(staff_rows) == {"'" + s for s in EVIL} | {"12345"}
    evil = staff_rows["'" + EVIL[0]]
    assert evil[header.index("窗口")] == EVIL_WINDOW  # a link is text in CSV: left alone
    assert evil[header.index("差评原因")] == "'" + EVIL_REASON + "×2 R1×2"
    assert evil[header.index("差评")] == "2" and evil[header.index("满意率")] == "0.0"
    breaches = table[table.index(["规则", "对象", "数值", "说明"]) + 1:]
    by_subject = {r[1]: r for r in breaches}
    for staff in EVIL:
        row = by_subject["'" + staff]
        assert row[2] == "2"
    # Every cell of the file: none starts a formula.
    for row in table:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", (row, cell)


def test_csv_cell_rule():
    assert rep.csv_cell("=1+1") == "'=1+1"
    assert rep.csv_cell("-x") == "'-x" and rep.csv_cell("\r") == "'\r" and rep.csv_cell("S1") == "S1"
    assert rep.csv_cell(-3) == -3 and rep.csv_cell(0.25) == 0.25 and rep.csv_cell("") == ""
