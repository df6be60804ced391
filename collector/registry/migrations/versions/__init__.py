"""The registry's schema revisions, one script per revision (0001_initial, 0002_jobs, ...), applied
in order by Alembic. Each imports Alembic and SQLAlchemy only; a test checks that their result
equals the models (collector/registry/models/)."""
