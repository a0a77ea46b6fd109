"""No Django models (yet): the module exists so that Django sends this app ``post_migrate``,
which creates or upgrades the qtasks tables of PostgreSQL apps (``apps._migrate_postgres``)."""
