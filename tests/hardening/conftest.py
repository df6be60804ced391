from tests.helpers.registry_backends import db_url, make_agent, pg_admin, registry  # noqa: F401 - fixtures
