from ops.loadgen.cli import app

app()
