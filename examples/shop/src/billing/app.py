from dateutil.relativedelta import relativedelta  # billing's own dependency
from datetime import date

from shared.money import cents


def handler(event, context):
    due = date(2026, 1, 1) + relativedelta(months=+1)
    return {"invoice": event.get("id"), "amount_cents": cents(str(event.get("amount", "0"))),
            "due": due.isoformat()}
