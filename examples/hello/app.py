"""A tiny Lambda handler: greets whoever the event names."""

import json
import os

from greeting import make_greeting

_CONFIG_PATH = os.path.join(os.path.dirname(__file__), "config", "settings.json")


def handler(event, context):
    with open(_CONFIG_PATH) as f:
        settings = json.load(f)
    name = (event or {}).get("name", settings["default_name"])
    return {"statusCode": 200, "body": make_greeting(settings["greeting"], name)}
