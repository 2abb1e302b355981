from ops.rollout.cli import app

app()
