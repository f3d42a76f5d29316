"""Tools for scheme owners and auditors: lint, diff, matrix, policy suites, the Casbin reference."""
