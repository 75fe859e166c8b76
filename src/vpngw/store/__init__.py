"""Storage: SQLAlchemy models, Alembic migrations, transactions, idempotency records.

Nothing outside this package writes SQL: actions call the query functions here.
"""
