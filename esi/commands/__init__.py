"""CLI command modules. Each defines ``register(app: typer.Typer)``; heavy imports stay inside commands."""
