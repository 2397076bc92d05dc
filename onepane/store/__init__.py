"""State store: SQLAlchemy tables, Alembic migrations, repositories."""
