from django import forms

from carnet.core.forms import DayField

from .models import JournalExport


class ExportForm(forms.Form):
    format = forms.ChoiceField(label="Format", choices=JournalExport.Format.choices)
    start = DayField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = DayField(label="To (included)", widget=forms.DateInput(attrs={"type": "date"}))
    detailed = forms.BooleanField(
        label="One journal per transaction (default: one per day)", required=False
    )
    allow_overlap = forms.BooleanField(
        label="Export even though this period overlaps an earlier export", required=False
    )
