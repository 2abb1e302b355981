"""HTTP routes of the ingress, one module per feature; each is thin: validate, resolve, dispatch."""
