import django.db.models.deletion
from django.db import migrations, models


def drop_mailing_index(apps, schema_editor):
    """Drop the index on mailing_id alone; mailings_event_report starts with that column.

    Done by hand rather than by AlterField, which would also drop and re-create
    the foreign key, checking every row of the events table while webhooks
    wait to insert.
    """
    model = apps.get_model("mailings", "DeliveryEvent")
    for name in schema_editor._constraint_names(model, ["mailing_id"], index=True, unique=False):
        if name != "mailings_event_report":
            schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_mailing_index(apps, schema_editor):
    model = apps.get_model("mailings", "DeliveryEvent")
    field = model._meta.get_field("mailing")
    schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):
    dependencies = [
        ("mailings", "0005_tracking_inbox"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="deliveryevent",
                    name="mailing",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="mailings.mailing",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_mailing_index, create_mailing_index),
            ],
        ),
    ]
