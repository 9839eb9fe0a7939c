"""Database access: engine, sessions, models and Alembic migrations."""
