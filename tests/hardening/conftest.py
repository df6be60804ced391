from tests.helpers.registry_backends import db_url, pg_admin  # noqa: F401 - fixtures
