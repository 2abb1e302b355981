"""API keys for the Gateway (recipes/tenants.py): make one, hash one, check a keys file."""
