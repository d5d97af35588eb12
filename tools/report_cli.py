"""`hcp report`: the hall admin's statistics tables from the gateway database."""

import csv
import json
import sys

import click

from gateway import report as rep


@click.group()
def report():
    """Statistics tables from the gateway database (评价数据统计表)."""


@report.command()
@click.option("--month", required=True, metavar="YYYY-MM", help="Calendar month in hall local time.")
@click.option("--db", "db_path", default="hcp-gateway.db", show_default=True, type=click.Path(dir_okay=False),
              help="The gateway's SQLite database.")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Output file (required for xlsx; default stdout).")
@click.option("--dept", default="", help="Department code for windows with no mapping (the hall's deptCode).")
@click.option("--tz-min", default=480, show_default=True, help="Hall offset from UTC in minutes.")
def monthly(month, db_path, fmt, out, dept, tz_min):
    """The month's figures per department, window and staff member, with the
    rule breaches (2+ 差评 in a year, window 差评 share over 5%, low invitations)."""
    import os
    import sqlite3

    if not os.path.exists(db_path):
        raise click.ClickException("no database at %s (use --db)" % db_path)
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
        data = rep.monthly(conn, month, dept_code=dept, tz_min=tz_min)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--month") from err
    except sqlite3.Error as err:
        raise click.ClickException("cannot read %s: %s" % (db_path, err)) from err
    if fmt == "json":
        text = json.dumps(data, ensure_ascii=False, indent=1)
        if out:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        else:
            click.echo(text)
    elif fmt == "csv":
        f = open(out, "w", newline="", encoding="utf-8-sig") if out else sys.stdout
        w = csv.writer(f)
        w.writerow([zh for _, zh in rep.COLUMNS])
        for row in data["rows"]:
            w.writerow([rep.csv_cell(v) for v in rep.flat_row(row)])
        w.writerow([])
        w.writerow(["规则", "对象", "数值", "说明"])
        for b in data["breaches"]:
            w.writerow([rep.csv_cell(v) for v in _breach_row(b)])
        if out:
            f.close()
    else:
        if not out:
            raise click.UsageError("--format xlsx needs --out FILE.xlsx")
        _xlsx(data, out)
    if out:
        click.echo("wrote %s (%d rows, %d rule breaches)" % (out, len(data["rows"]), len(data["breaches"])),
                   err=True)


def _breach_row(b):
    return [b["rule"], b.get("staff") or b.get("window"), b["value"], b["text"]]


def _cell(ws, r, c, v, fmt=None):
    """Text is written as text: never a formula, a link or a number, whatever
    it starts with (staff ids and windows come from devices and pairing)."""
    if v is None or v == "":
        ws.write_blank(r, c, None, fmt)
    elif isinstance(v, str):
        ws.write_string(r, c, v, fmt)
    else:
        ws.write_number(r, c, v, fmt)


def _xlsx(data, out):
    import xlsxwriter

    # The options too: no write() call may turn a string into a formula or a link.
    wb = xlsxwriter.Workbook(out, {"strings_to_formulas": False, "strings_to_urls": False,
                                   "strings_to_numbers": False})
    head = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
    pct = wb.add_format({"num_format": "0.0%"})
    ws = wb.add_worksheet("评价数据统计表")
    for c, (_, zh) in enumerate(rep.COLUMNS):
        _cell(ws, 0, c, zh, head)
    for r, row in enumerate(data["rows"], 1):
        for c, v in enumerate(rep.flat_row(row)):
            key = rep.COLUMNS[c][0]
            _cell(ws, r, c, v, pct if key in ("satisfaction_rate", "coverage") and v != "" else None)
    ws.freeze_panes(1, 0)
    ws2 = wb.add_worksheet("规则提示")
    for c, h in enumerate(["规则", "对象", "数值", "说明"]):
        _cell(ws2, 0, c, h, head)
    for r, b in enumerate(data["breaches"], 1):
        for c, v in enumerate(_breach_row(b)):
            _cell(ws2, r, c, v)
    wb.close()
