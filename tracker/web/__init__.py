"""The web app (issue 6): FastAPI pages and a JSON API over the same services as the CLI."""
