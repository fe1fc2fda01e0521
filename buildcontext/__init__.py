"""The build-context engine: what a `docker build` of a context sends, its digest, the sensitive-file guard."""
