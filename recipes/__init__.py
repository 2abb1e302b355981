"""Serving recipes: schema, loading, and what a rendered config hands the application."""
