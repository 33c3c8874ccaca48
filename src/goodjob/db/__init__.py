"""The database: connections, named SQL statements, migrations. Only here is psycopg imported."""

from goodjob.db.database import CHANNEL, Database, DedicatedConnection, Row, json, json_text

__all__ = ["CHANNEL", "Database", "DedicatedConnection", "Row", "json", "json_text"]
