"""The step catalog: every built or added step, searchable, for reuse in compositions.

Nothing is imported here: the database layer (SQLAlchemy, Alembic) loads only when a catalog is
opened (``jup2kub.catalog.store``), so commands that need none start as fast as before.
"""
