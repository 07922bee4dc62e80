# A value package imported from the clinic's previous system keeps the value drawn there (issue 23).

import django.db.models.expressions
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('passes', '0020_pass_invoice_names'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='pass',
            name='pass_value_never_over_drawn',
        ),
        migrations.AddField(
            model_name='pass',
            name='value_before_import_minor',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddConstraint(
            model_name='pass',
            constraint=models.CheckConstraint(condition=models.Q(('value_before_import_minor__gte', 0), ('value_forfeited_minor__gte', 0), ('value_posted_minor__gte', 0), ('value_reserved_minor__gte', 0), models.Q(('face_value_minor__isnull', True), ('face_value_minor__gte', django.db.models.expressions.CombinedExpression(django.db.models.expressions.CombinedExpression(django.db.models.expressions.CombinedExpression(models.F('value_reserved_minor'), '+', models.F('value_posted_minor')), '+', models.F('value_forfeited_minor')), '+', models.F('value_before_import_minor'))), _connector='OR')), name='pass_value_never_over_drawn'),
        ),
    ]
