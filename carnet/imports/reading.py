"""Reading an uploaded file into rows: CSV (UTF-8 with or without BOM, or the clinic's Windows code
page, detected and named) or XLSX (its first sheet). Line numbers are those a spreadsheet shows: the
header is line 1."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from dataclasses import dataclass, field

from django.conf import settings

from carnet.core.errors import ValidationFailed

MAX_BYTES = 50 * 1024 * 1024


@dataclass
class Sheet:
    encoding: str
    headers: list[str]
    rows: list[tuple[int, list[str]]] = field(default_factory=list)  # (line, cells as text)


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "UTF-8 with BOM"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    # Not UTF-8: what Excel on Windows writes in the clinic's code page (IMPORT_WINDOWS_ENCODING,
    # default Windows-1252). A few bytes are undefined in each;
    # a file that has them is refused below.
    codec = codecs.lookup(settings.IMPORT_WINDOWS_ENCODING)
    name = (
        "Windows-" + codec.name.removeprefix("cp") if codec.name.startswith("cp125") else codec.name
    )
    try:
        return data.decode(codec.name), name
    except UnicodeDecodeError:
        raise ValidationFailed(
            f"This file is neither UTF-8 nor {name} text. Save it as “CSV UTF-8” "
            "from your spreadsheet and try again.",
            code="unreadable_file",
        ) from None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time.min else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _csv(data: bytes) -> Sheet:
    text, encoding = _decode(data)
    if "\x00" in text:
        raise ValidationFailed(
            "This file has binary content; upload a CSV or an XLSX file.", code="unreadable_file"
        )
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    sheet = Sheet(encoding=encoding, headers=[])
    try:
        line = 1
        for cells in reader:
            if not sheet.headers:
                sheet.headers = [c.strip() for c in cells]
            elif any(c.strip() for c in cells):
                sheet.rows.append((line, [c.strip() for c in cells]))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise ValidationFailed(
            f"Line {reader.line_num}: the CSV cannot be read ({exc}). Check its quotes.",
            code="unreadable_file",
        ) from None
    return sheet


def _xlsx(data: bytes) -> Sheet:
    # late: openpyxl is large and only a spreadsheet upload needs it
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (
        Exception
    ):  # openpyxl raises many kinds for a damaged file; all mean the same to the clinic
        raise ValidationFailed(
            "This XLSX file cannot be opened. Save it again from your spreadsheet, or as CSV.",
            code="unreadable_file",
        ) from None
    sheet = Sheet(encoding="XLSX", headers=[])
    for line, values in enumerate(book.worksheets[0].iter_rows(values_only=True), start=1):
        cells = [_text(v) for v in values]
        if not sheet.headers:
            sheet.headers = cells
        elif any(cells):
            sheet.rows.append((line, cells))
    book.close()
    return sheet


def sheet_read(*, data: bytes, file_name: str) -> Sheet:
    """The file's header and rows, or ValidationFailed saying what to do with it."""
    if not data:
        raise ValidationFailed("The file is empty.", code="empty_file")
    if len(data) > MAX_BYTES:
        raise ValidationFailed(
            "The file is larger than 50 MB; split it into smaller files.", code="file_too_large"
        )
    sheet = (
        _xlsx(data) if data[:2] == b"PK" else _csv(data)
    )  # XLSX is a zip, whatever its name says
    while sheet.headers and not sheet.headers[-1]:
        sheet.headers.pop()
    if not any(sheet.headers):
        raise ValidationFailed(
            f"{file_name} has no header row; the first line must name the columns.",
            code="no_header",
        )
    return sheet
