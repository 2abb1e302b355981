"""HTTP routes of the ingress, one module per feature; each is thin: validate, resolve the
pool, call its client, write the response."""
