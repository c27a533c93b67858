"""Alembic migrations, shipped inside the package so `pip install .` can migrate."""
