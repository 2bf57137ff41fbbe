"""hotshard's own constructs: code assets built without Docker and a least-privilege Lambda."""
