from ops.capacity.cli import app

app()
