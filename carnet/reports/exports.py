"""CSV and XLSX downloads of a report Table (openpyxl for XLSX). Money is written in major units
with the currency's decimals, so a spreadsheet's SUM equals the page's totals row."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from django.utils.text import slugify

from carnet.clinic.selectors import clinic_get
from carnet.core.money import exponent, major
from carnet.core.spreadsheet import formula_safe

from .table import DATE, MONEY, Table


def _cells(table: Table, row: dict, places: int) -> list:
    out = []
    for column in table.columns:
        value = row.get(column.key)
        if column.kind == MONEY and value is not None:
            value = major(value or 0, places)
        out.append(value)
    return out


def _filename(table: Table, ext: str) -> str:
    return f"{slugify(table.title) or 'report'}.{ext}"


def csv_response(table: Table) -> HttpResponse:
    places = exponent(clinic_get().currency)
    buffer = io.StringIO()
    buffer.write(
        "\ufeff"
    )  # the BOM: Excel then reads UTF-8 ("Bélanger", "—") instead of its local code page
    writer = csv.writer(buffer)
    writer.writerow([formula_safe(c.label) for c in table.columns])
    for row in table.rows:
        writer.writerow(["" if v is None else formula_safe(v) for v in _cells(table, row, places)])
    totals = table.totals
    if totals:
        writer.writerow(
            [
                "Total"
                if i == 0 and c.key not in totals
                else (major(totals[c.key] or 0, places) if c.kind == MONEY else totals[c.key])
                if c.key in totals
                else ""
                for i, c in enumerate(table.columns)
            ]
        )
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename(table, "csv")}"'
    return response


def xlsx_bytes(table: Table) -> bytes:
    # late: openpyxl is large and only a spreadsheet export needs it
    from openpyxl import Workbook
    from openpyxl.styles import Font

    currency = clinic_get().currency
    places = exponent(currency)
    money_format = "#,##0" + ("." + "0" * places if places else "")
    book = Workbook()
    sheet = book.active
    sheet.title = table.title[:31]
    sheet.append([c.label for c in table.columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in table.rows:
        sheet.append(_cells(table, row, places))
        for cell in sheet[sheet.max_row]:
            if cell.data_type == "f":  # openpyxl takes any text starting with "=" for a formula
                cell.data_type = "s"
    totals = table.totals
    if totals:
        sheet.append(
            [
                "Total"
                if i == 0 and c.key not in totals
                else (major(totals[c.key] or 0, places) if c.kind == MONEY else totals[c.key])
                if c.key in totals
                else None
                for i, c in enumerate(table.columns)
            ]
        )
        for cell in sheet[sheet.max_row]:
            cell.font = Font(bold=True)
    for index, column in enumerate(table.columns, start=1):
        letter = sheet.cell(row=1, column=index).column_letter
        if column.kind == MONEY:
            for cell in sheet[letter][1:]:
                cell.number_format = money_format
        elif column.kind == DATE:
            for cell in sheet[letter][1:]:
                cell.number_format = "yyyy-mm-dd"
        sheet.column_dimensions[letter].width = max(12, len(column.label) + 2)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def xlsx_response(table: Table) -> HttpResponse:
    response = HttpResponse(
        xlsx_bytes(table),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    response["Content-Disposition"] = f'attachment; filename="{_filename(table, "xlsx")}"'
    return response


def export_or_none(request, table: Table) -> HttpResponse | None:
    """`?format=csv` or `?format=xlsx` on any report page downloads the same table."""
    wanted = request.GET.get("format")
    if wanted == "csv":
        return csv_response(table)
    if wanted == "xlsx":
        return xlsx_response(table)
    return None
