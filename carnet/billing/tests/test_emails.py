"""Email leaves only after the database commit, through the task queue (SPEC 3.3)."""

import io

import pytest
from django.core import mail
from django.db import transaction
from django.urls import reverse
from pypdf import PdfReader

from carnet.billing.emails import pay_balance_request, receipt_email
from carnet.billing.tests.factories import manual_invoice
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_patient, make_staff
from carnet.core.errors import Conflict, NotAllowed
from carnet.core.mail import Attachment, mail_queue, send_email
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice(front_desk, catalog):
    clinic = clinic_get()
    clinic.invoice_prefix, clinic.email = "HW-", "hello@clinic.example"
    clinic.save()
    return manual_invoice(
        front_desk,
        make_patient(email="ana@example.test"),
        4250,
        category=catalog["income_category"],
    )


def test_receipt_email_goes_out_after_commit_with_the_pdf(
    front_desk, invoice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        receipt_email(actor=front_desk.user, invoice=invoice, form="detailed")
        assert mail.outbox == []  # nothing before the commit
    [message] = mail.outbox
    assert message.to == ["ana@example.test"] and message.reply_to == ["hello@clinic.example"]
    assert f"HW-{invoice.number}" in message.subject and "$42.50" in message.body
    [(filename, content, mimetype)] = message.attachments
    assert (filename, mimetype) == (f"receipt-HW-{invoice.number}.pdf", "application/pdf")
    text = PdfReader(io.BytesIO(content)).pages[0].extract_text()
    assert f"HW-{invoice.number}" in text and "$42.50" in text and "Detailed receipt" in text
    assert ActivityLog.objects.filter(verb="receipt_emailed", object_id=str(invoice.pk)).exists()


def test_nothing_is_sent_when_the_transaction_rolls_back(
    front_desk, invoice, django_capture_on_commit_callbacks
):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        receipt_email(actor=front_desk.user, invoice=invoice)
        raise RuntimeError("something later in the same transaction failed")
    assert callbacks == [] and mail.outbox == []


def test_receipt_email_refuses_a_patient_without_email(front_desk, catalog):
    invoice = manual_invoice(
        front_desk, make_patient(email=""), 1000, category=catalog["income_category"]
    )
    with pytest.raises(Conflict) as exc:
        receipt_email(actor=front_desk.user, invoice=invoice)
    assert exc.value.code == "no_email" and "has no email address" in exc.value.message


def test_receipt_email_needs_billing_access(invoice):
    with pytest.raises(NotAllowed):
        receipt_email(actor=make_staff(AccessLevel.FRONT_DESK, billing=False).user, invoice=invoice)


def test_receipt_email_page_redirects_to_the_billing_tab(
    client, front_desk, invoice, catalog, django_capture_on_commit_callbacks
):
    client.force_login(front_desk.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("billing:receipt_email", args=[invoice.pk]), {"form": "quick"}
        )
    assert response.status_code == 302 and response["Location"] == reverse(
        "billing:tab", args=[invoice.patient_id]
    )
    assert len(mail.outbox) == 1
    page = client.get(response["Location"]).content.decode()
    assert "on its way to ana@example.test" in page

    no_email = manual_invoice(
        front_desk, make_patient(email=""), 1000, category=catalog["income_category"]
    )
    response = client.post(reverse("billing:receipt_email", args=[no_email.pk]), follow=True)
    assert "has no email address" in response.content.decode() and len(mail.outbox) == 1


def test_pay_balance_request_emails_a_signed_link(
    front_desk, invoice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        link = pay_balance_request(
            actor=front_desk.user, patient=invoice.patient, base_url="https://clinic.example/"
        )
    [message] = mail.outbox
    assert link.startswith("https://clinic.example/portal/pay/") and link in message.body
    assert "$42.50" in message.body and f"HW-{invoice.number}" in message.body


def test_pay_balance_request_refuses_when_nothing_is_owed_or_no_email(front_desk, catalog):
    with pytest.raises(Conflict) as exc:
        pay_balance_request(actor=front_desk.user, patient=make_patient(), base_url="http://x")
    assert exc.value.code == "nothing_owing"
    owes = make_patient(email="")
    manual_invoice(front_desk, owes, 1000, category=catalog["income_category"])
    with pytest.raises(Conflict) as exc:
        pay_balance_request(actor=front_desk.user, patient=owes, base_url="http://x")
    assert exc.value.code == "no_email"


def test_pay_balance_request_needs_payment_access(client, invoice):
    practitioner = make_staff(AccessLevel.PRACTITIONER_FRONT_DESK)
    with pytest.raises(NotAllowed):
        pay_balance_request(actor=practitioner.user, patient=invoice.patient, base_url="http://x")
    client.force_login(practitioner.user)
    assert (
        client.post(reverse("billing:pay_balance_request", args=[invoice.patient_id])).status_code
        == 403
    )


def render_hello(*, name: str) -> bytes:
    return f"Hello {name}".encode()


def test_the_worker_renders_attachments_and_refuses_foreign_renderers(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        mail_queue(
            to="a@example.test",
            subject="Hi\nthere",
            template="billing/email/balance_paid.txt",
            context={
                "patient": make_patient(),
                "clinic": clinic_get(),
                "amount": "$1.00",
                "numbers": [],
            },
            attachments=[
                Attachment("x.txt", "text/plain", f"{__name__}.render_hello", {"name": "Ana"})
            ],
        )
    [message] = mail.outbox
    assert message.subject == "Hi there" and message.attachments == [
        ("x.txt", "Hello Ana", "text/plain")
    ]
    with pytest.raises(ValueError):
        send_email.call(
            to=["a@example.test"],
            subject="s",
            body="b",
            attachments=[
                {"filename": "x", "mimetype": "text/plain", "render": "os.getcwd", "kwargs": {}}
            ],
        )
