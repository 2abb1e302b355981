from ops.recipes.cli import app

app()
