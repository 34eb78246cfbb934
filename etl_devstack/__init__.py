"""Local services (PostgreSQL, Redis) for tests, the demo and `make up`: real ones, or embedded."""
