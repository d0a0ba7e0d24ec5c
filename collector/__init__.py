"""infrawatch collector: ingest API, embedded store, sinks, query API and extensions."""
