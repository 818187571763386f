import json
import os

import requests  # from the common layer (/opt/python)

from shared.money import cents

CONFIG = json.load(open(os.path.join(os.path.dirname(__file__), "..", "config", "orders", "settings.json")))


def handler(event, context):
    total = cents(str(event.get("total", "0")))
    return {"order": event.get("id"), "total_cents": total, "currency": CONFIG["currency"],
            "requests": requests.__version__}
