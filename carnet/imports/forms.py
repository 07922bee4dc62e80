from django import forms

from carnet.core.forms import DayField

from .columns import COLUMNS
from .models import Kind

KIND_CHOICES = [(k, Kind(k).label) for k in COLUMNS]


class UploadForm(forms.Form):
    kind = forms.ChoiceField(label="What the file holds", choices=KIND_CHOICES)
    file = forms.FileField(
        label="CSV or XLSX file",
        help_text="UTF-8 or Windows CSV, or an Excel workbook (first sheet).",
    )
    cut_over = DayField(
        label="Cut-over date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Opening balances are dated the start of this day. Blank: today.",
    )
