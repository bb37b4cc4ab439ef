"""The tenancy adapter: a tenant registry with budgets and quotas, preflight, migration.

See ``docs/pql/TENANCY.md``.
"""
