"""All SQL lives in this package: `api` for the functions and sweeper, `runner` for the runner."""
