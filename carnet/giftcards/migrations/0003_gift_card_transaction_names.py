# Issue 24, one word per concept: a gift card's history row names its gift card `gift_card` (and the
# other side of a transfer `other_gift_card`); `card` alone means a card on file. Columns renamed in
# place, data kept.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("giftcards", "0002_gift_card_refund_holds"),
    ]

    operations = [
        migrations.RenameField(
            model_name="giftcardtransaction", old_name="card", new_name="gift_card"
        ),
        migrations.RenameField(
            model_name="giftcardtransaction", old_name="other_card", new_name="other_gift_card"
        ),
    ]
