"""Where the lake lives: storage roots (local, gs://), atomic publishing, credentials."""
