"""Where the lake lives: storage roots (local, gs://, s3://, az://), atomic publishing with
one retry layer, each provider's credentials and errors, the bucket check."""
