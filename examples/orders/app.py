"""Order intake: validate the order with pydantic, forward it with requests."""

import os

import requests
from pydantic import BaseModel, Field, ValidationError


class Line(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(gt=0)


class Order(BaseModel):
    order_id: str
    customer: str
    lines: list[Line] = Field(min_length=1)


def handler(event, context):
    try:
        order = Order.model_validate(event or {})
    except ValidationError as e:
        return {"statusCode": 400, "body": e.json()}
    url = os.environ.get("ORDERS_WEBHOOK_URL")
    if url:
        requests.post(url, json=order.model_dump(), timeout=5).raise_for_status()
    return {"statusCode": 202, "body": order.model_dump_json()}
