# Convenience targets; the README's two commands are scripts/up.sh and scripts/test.sh.
PY ?= .venv/bin/python

.PHONY: up test bench bench-agent bench-ingest

up:
	./scripts/up.sh

test:
	./scripts/test.sh

bench: bench-agent bench-ingest

bench-agent:
	$(PY) bench/agent_overhead.py

bench-ingest:
	$(PY) bench/ingest.py
