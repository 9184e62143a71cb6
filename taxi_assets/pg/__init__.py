"""PostgreSQL helpers: DDL from Arrow schemas, COPY in and out, the embedded server, roles."""
