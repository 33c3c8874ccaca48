"""Transactional enqueue with SQLAlchemy 2: the job commits or rolls back with the session."""

import os

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

import goodjob

gj = goodjob.GoodJob()  # GOODJOB_DATABASE_URL, else DATABASE_URL
# The psycopg 3 driver: goodjob enqueues on the connection under the session.
engine = create_engine(os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))


@gj.task
def send_receipt(order_id: int) -> None:
    print("receipt for order", order_id)


def place_order(order_id: int) -> None:
    with Session(engine) as session, session.begin():
        session.execute(text("INSERT INTO orders (id) VALUES (:id)"), {"id": order_id})
        send_receipt.using(connection=session).enqueue(order_id)  # committed with the order
