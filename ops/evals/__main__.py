from ops.evals.cli import app

app()
