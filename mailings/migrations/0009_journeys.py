# The sending ledger carries journey emails: a mailing's kind, and a delivery's
# round (a supporter's entry into a journey) in its unique key.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mailings", "0008_composer"),
    ]

    operations = [
        migrations.AddField(
            model_name="mailing",
            name="kind",
            field=models.CharField(
                choices=[("newsletter", "Newsletter"), ("journey", "Journey email")],
                db_default="newsletter",
                default="newsletter",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="delivery",
            name="round",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.RemoveConstraint(
            model_name="delivery",
            name="mailings_delivery_once",
        ),
        migrations.AddConstraint(
            model_name="delivery",
            constraint=models.UniqueConstraint(
                fields=("mailing", "supporter", "round"), name="mailings_delivery_once"
            ),
        ),
    ]
